"""Which decoders the engine runs exactly, decided from the config alone (before weights load).

A model type is accepted when its modeling code reaches attention only through transformers'
attention interface, with every variant it uses handled by ``engine.attention`` (sliding windows,
soft-capping, sinks, the model's own scaling) and checked against transformers' own dense model
(tests/test_model_zoo.py). Anything else is refused by name with ``UnsupportedModelError``: a
wrong answer with no error is the worst thing the tool can do.
"""

from __future__ import annotations

from engine.errors import UnsupportedModelError

# Checked against transformers' eager greedy tokens, one tiny model each (tests/test_model_zoo.py).
CHECKED_MODEL_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen3",
        "qwen3_moe",
        "gemma",
        "gemma2",
        "gemma3_text",
        "gpt_oss",
        "phi",
        "phi3",
        "stablelm",
        "gpt_neox",
        "cohere",
        "olmo2",
        "granite",
        "smollm3",
        "starcoder2",
        "glm",
    }
)

# Layer kinds of ``config.layer_types`` the attention function handles.
HANDLED_LAYER_TYPES = frozenset({"full_attention", "sliding_attention"})


def check_model_supported(config) -> None:
    """Raise ``UnsupportedModelError`` naming the model type and the feature the engine cannot run
    exactly; return quietly for a config it can. Reads the config only."""
    model_type = getattr(config, "model_type", None) or type(config).__name__
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(model_type, "encoder-decoder models are not decoders")
    if model_type not in CHECKED_MODEL_TYPES:
        families = ", ".join(sorted(CHECKED_MODEL_TYPES))
        raise UnsupportedModelError(
            model_type, f"not among the families checked for exact Star Attention ({families})"
        )
    layer_types = getattr(config, "layer_types", None) or ()
    unknown = sorted(set(layer_types) - HANDLED_LAYER_TYPES)
    if unknown:
        raise UnsupportedModelError(model_type, f"attention layer type {', '.join(unknown)}")
    if getattr(config, "use_bidirectional_attention", False):
        raise UnsupportedModelError(model_type, "bidirectional attention (use_bidirectional_attention)")
    if "sliding_attention" in layer_types and not getattr(config, "sliding_window", None):
        raise UnsupportedModelError(model_type, "sliding-window layers without a sliding_window size")


# Model types whose RMSNorm, SiLU MLP and RoPE are Llama's own (``engine.fused`` runs them fused on
# CUDA; ``engine.memory`` then counts no float32 copy in the norm).
FUSED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})

# Model types whose attention has per-head sinks (a logit with no value), which sdpa lacks.
SINK_MODEL_TYPES = frozenset({"gpt_oss"})


def needs_eager_attention(config) -> bool:
    """Whether transformers' dense baseline must run its eager attention: sdpa has no soft-capping
    and no sinks, and some transformers releases let it run such a model anyway."""
    model_type = getattr(config, "model_type", None)
    return bool(getattr(config, "attn_logit_softcapping", None)) or model_type in SINK_MODEL_TYPES
