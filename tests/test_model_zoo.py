"""Every decoder family the engine accepts, on a tiny random model of transformers' own config
class (2 layers, hidden 64, windows of 16 tokens against an 80-token context), compared with
transformers' own dense model on the same weights (issue 12):

- ``global``, ``star`` with one block and ``star`` with two blocks whose anchor is the first block
  (exactly dense) give transformers' eager greedy tokens;
- ``star`` with five blocks gives the greedy tokens of the paper's phase 1 done with the dense
  model itself (``tests.helpers.reference_context_cache``: ``[anchor, block]`` as one sequence,
  its window by index in that sequence; the query after the whole context);
- families and features the engine does not handle are refused by name from the config alone.
"""

from __future__ import annotations

import copy

import pytest
import torch
import transformers

from engine import Engine, Request, Token
from engine.errors import EngineError, UnsupportedModelError
from engine.support import CHECKED_MODEL_TYPES, check_model_supported
from tests.helpers import IdTokenizer, reference_context_cache, reference_greedy, settings_of

VOCAB, WINDOW, STEPS = 101, 16, 8
TINY = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    pad_token_id=0,
    bos_token_id=None,
    eos_token_id=None,
    tie_word_embeddings=False,  # tied heads echo the last token whatever attention does
    initializer_range=0.3,  # scores of order 1 and more: soft-capping, sinks and windows all bite
)
ALTERNATING = ["sliding_attention", "full_attention"]

# family -> (config class, its overrides of TINY): windows, soft-capping, sinks, scaling made to bite.
ZOO: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", {}),
    "mistral-window": ("MistralConfig", dict(sliding_window=WINDOW)),
    "qwen2-window": (
        "Qwen2Config",
        dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1),
    ),
    "qwen3": ("Qwen3Config", dict(head_dim=16)),
    "gemma": ("GemmaConfig", dict(head_dim=16)),
    "gemma2": (
        "Gemma2Config",
        dict(
            head_dim=16,
            sliding_window=WINDOW,
            layer_types=ALTERNATING,
            attn_logit_softcapping=1.0,
            final_logit_softcapping=None,
            query_pre_attn_scalar=8,
        ),
    ),
    "gemma3": (
        "Gemma3TextConfig",
        dict(head_dim=16, sliding_window=WINDOW, layer_types=ALTERNATING, query_pre_attn_scalar=8),
    ),
    "gpt-oss": (
        "GptOssConfig",
        dict(
            head_dim=16,
            sliding_window=WINDOW,
            layer_types=ALTERNATING,
            num_local_experts=4,
            num_experts_per_tok=2,
        ),
    ),
    "phi3-window": ("Phi3Config", dict(sliding_window=WINDOW)),
    "stablelm": ("StableLmConfig", dict(partial_rotary_factor=0.5)),
    "gpt-neox": ("GPTNeoXConfig", dict(rotary_pct=0.5)),
    "cohere": ("CohereConfig", {}),
    "olmo2": ("Olmo2Config", {}),
    "granite": ("GraniteConfig", dict(attention_multiplier=0.2)),
    "smollm3": ("SmolLM3Config", {}),
    "mixtral-window": ("MixtralConfig", dict(sliding_window=WINDOW, num_local_experts=4)),
    "qwen3-moe": (
        "Qwen3MoeConfig",
        dict(head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32),
    ),
    "phi": ("PhiConfig", dict(partial_rotary_factor=0.5)),
    "starcoder2-window": ("Starcoder2Config", dict(sliding_window=WINDOW)),
    "glm": ("GlmConfig", dict(head_dim=16)),
}
ZOO = {name: spec for name, spec in ZOO.items() if hasattr(transformers, spec[0])}


def tiny_model(family: str) -> torch.nn.Module:
    class_name, overrides = ZOO[family]
    config = getattr(transformers, class_name)(**{**TINY, **overrides})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # some families start with zeros (sinks) or tiny ranges: make them count
        for name, param in model.named_parameters():
            if name.endswith("sinks"):
                param.normal_(0.0, 2.0)
    return model


@pytest.fixture(scope="module", params=sorted(ZOO))
def family(request):
    model = tiny_model(request.param)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    return request.param, model, eager


CONTEXT = torch.randint(0, VOCAB, (80,), generator=torch.Generator().manual_seed(7)).tolist()
QUERY = [3, 14, 15, 92]


@torch.no_grad()
def eager_greedy(model, ids: list[int], steps: int) -> list[int]:
    """transformers' eager attention over the whole sequence, recomputed for every token."""
    seq = list(ids)
    for _ in range(steps):
        seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids) :]


def engine_greedy(model, mode: str, **kwargs) -> list[int]:
    engine = Engine(model, IdTokenizer())
    events = engine.run(Request(CONTEXT, [QUERY], settings_of(mode, STEPS, **kwargs)))
    return [e.token_id for e in events if isinstance(e, Token) and e.token_id >= 0]


def test_zoo_global_and_exactly_dense_star_layouts_equal_transformers_eager(family):
    name, model, eager = family
    check_model_supported(model.config)
    expected = eager_greedy(eager, CONTEXT + QUERY, STEPS)
    assert engine_greedy(model, "global") == expected, "global"
    assert engine_greedy(model, "star", block_size=len(CONTEXT)) == expected, "star, one block"
    assert engine_greedy(model, "star", block_size=40, anchor_size=40) == expected, "star, anchor = block"


def test_zoo_star_with_five_blocks_equals_the_dense_per_block_reference(family):
    name, model, _ = family
    reference = reference_context_cache(model, CONTEXT, 16, 16)
    expected = reference_greedy(model, reference, len(CONTEXT), QUERY, STEPS)
    assert engine_greedy(model, "star", block_size=16, anchor_size=16) == expected


def test_every_zoo_family_is_accepted_and_listed():
    for name in ZOO:
        class_name, overrides = ZOO[name]
        config = getattr(transformers, class_name)(**{**TINY, **overrides})
        assert config.model_type in CHECKED_MODEL_TYPES
        check_model_supported(config)


@pytest.mark.parametrize(
    "config,words",
    [
        (transformers.GPT2Config(), r"model type 'gpt2' is not supported: not among the families"),
        (
            transformers.LlamaConfig(layer_types=["chunked_attention"], num_hidden_layers=1),
            r"model type 'llama' is not supported: attention layer type chunked_attention",
        ),
        (
            transformers.Gemma3TextConfig(use_bidirectional_attention=True),
            r"'gemma3_text' is not supported: bidirectional attention",
        ),
    ],
)
def test_unhandled_models_are_refused_by_name_before_weights_load(config, words):
    with pytest.raises(UnsupportedModelError, match=words) as caught:
        check_model_supported(config)
    assert isinstance(caught.value, EngineError) and caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def saved_gpt_oss(tmp_path_factory):
    from tests.helpers import save_byte_tokenizer

    model = tiny_model("gpt-oss")
    path = tmp_path_factory.mktemp("tiny-gpt-oss")
    model.save_pretrained(path)
    save_byte_tokenizer(path)
    return model, str(path)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "ranks"), [("star", 3), ("ring", 2)])
def test_windows_and_sinks_over_gloo_ranks_give_the_reference_tokens(saved_gpt_oss, mode, ranks):
    """gpt-oss (sliding-window layers and sinks) over gloo ranks: star's seven blocks over 3 ranks
    give the dense per-block reference's tokens (a window by global index in phase 2, wherever the
    keys' rank; the sink counted once); ring over 2 gives transformers' eager tokens. (Star over 2
    ranks is the 3-rank case less its middle rank, the one that is neither first nor query host.)"""
    from transformers import AutoTokenizer

    from engine import Stats
    from tests.helpers import star_plan, worker_ranks_run

    model, path = saved_gpt_oss
    if mode == "star":
        expected = reference_greedy(model, reference_context_cache(model, CONTEXT, 12, 12), 80, QUERY, STEPS)
    else:
        eager = copy.deepcopy(model)
        eager.set_attn_implementation("eager")
        expected = eager_greedy(eager, CONTEXT + QUERY, STEPS)
    plan = star_plan(len(CONTEXT), 12, 12, ranks, max_tokens=STEPS, query_tokens=len(QUERY), attention=mode)
    assert min(plan.blocks_per_rank()) > 0
    events = worker_ranks_run(Request(CONTEXT, [QUERY], plan=plan), path)
    stats = next(e for e in events if isinstance(e, Stats))
    assert stats.world_size == ranks and stats.generated_tokens == STEPS
    assert stats.answer == AutoTokenizer.from_pretrained(path).decode(expected)


@pytest.mark.parametrize("name", ["gemma3", "gpt-oss"])
def test_window_local_positions_equal_the_dense_per_block_reference(name):
    """Local positions (blocks right after the anchor) change nothing in the window rule: phase 1
    counts by index in ``[anchor, block]``, phase 2 by global index."""
    from engine.settings import Positions

    model = tiny_model(name)
    cache = reference_context_cache(model, CONTEXT, 16, 16, local=True)
    expected = reference_greedy(model, cache, 32, QUERY, STEPS)
    assert engine_greedy(model, "star", block_size=16, anchor_size=16, positions=Positions.LOCAL) == expected


def test_global_runs_eager_where_sdpa_would_drop_the_soft_cap(monkeypatch):
    """transformers 5.17 let Gemma 2 run sdpa, which skips soft-capping: ``global`` must choose
    eager from the config itself, not from whether transformers accepts sdpa."""
    model = tiny_model("gemma2")
    monkeypatch.setattr(type(model), "_supports_sdpa", True)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    model.set_attn_implementation("sdpa")  # what from_config/from_pretrained chose there
    assert engine_greedy(model, "global") == eager_greedy(eager, CONTEXT + QUERY, STEPS)
