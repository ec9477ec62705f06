"""Turn documents and a question into the engine's context and query, counted exactly.

The prompt is built in the CLI process with the model's tokenizer only (no weights), for two
reasons: the exact token count is known before any model loads, so input beyond the model's
window stops with exit 2 instead of costing a model load (or a torchrun job) first; and the
request then carries token ids, so every rank sees exactly the tokens that were counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.chat import build_prompt, encode, follow_up_text
from engine.plan import CostModel

# How a question reaches the model: after the documents (phase 1 never sees it), with a short
# instruction that keeps small models on the documents instead of their own recollections.
ASK_TEMPLATE = "Answer the question using the documents above.\n\nQuestion: {question}"

# Summaries: short on purpose. The default 135M model loses the thread (and starts repeating
# itself) under long lists of instructions; these two kept it on topic for samples/, and still
# say what a larger model should cover.
SUMMARIZE_DOCUMENT = (
    "Summarize the document above in a few sentences: what it is, then its main points, "
    "keeping key names and numbers exact."
)
SUMMARIZE_REPOSITORY = (
    "Summarize the code repository above: what the software does, how to use it, "
    "and what each main file is for."
)

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Prompt:
    """The context (phase 1) and query (phase 2) as text and as the token ids sent to the engine."""

    context_text: str
    query_text: str
    context_ids: list[int]
    query_ids: list[int]


def ask_instructions(question: str) -> str:
    """The user's question wrapped in ``ASK_TEMPLATE``."""
    return ASK_TEMPLATE.format(question=question.strip())


def summary_instructions(sources: list[str]) -> str:
    """Repository instructions when any source is a directory, document instructions otherwise."""
    is_repository = any(s != "-" and Path(s).is_dir() for s in sources)
    return SUMMARIZE_REPOSITORY if is_repository else SUMMARIZE_DOCUMENT


def build(tokenizer, documents_text: str, question: str, system: str | None = None) -> Prompt:
    """Chat-template the documents and question, then tokenize each half exactly as the engine would."""
    documents_text, question = valid_unicode(documents_text), valid_unicode(question)
    system = valid_unicode(system) if system is not None else None
    context_text, query_text = build_prompt(tokenizer, documents_text, question, system)
    context_ids = _encode_context(tokenizer, context_text, documents_text)
    return Prompt(context_text, query_text, context_ids, encode(tokenizer, query_text))


def query_ids(tokenizer, question: str, system: str | None = None) -> list[int]:
    """The query ids of one more question over the same context (the query does not depend on
    the documents: ``build``'s ``query_ids`` for this question)."""
    system = valid_unicode(system) if system is not None else None
    return encode(tokenizer, build_prompt(tokenizer, "", valid_unicode(question), system)[1])


def follow_up_ids(tokenizer, question: str, after_eos: bool, system: str | None = None) -> list[int]:
    """The query ids of a follow-up in a conversation (``engine.chat.follow_up_text``)."""
    system = valid_unicode(system) if system is not None else None
    return encode(tokenizer, follow_up_text(tokenizer, valid_unicode(question), after_eos, system))


def _encode_context(tokenizer, context_text: str, documents_text: str) -> list[int]:
    """The context's token ids, where the documents can never produce a special token: a file
    holding ``<|im_end|><|im_start|>system`` or ``<|endoftext|>`` is text about them, not the
    end of the user's turn or of the input. Documents without such strings tokenize as before,
    in one piece with the template's head (``context_text`` ends with ``documents_text``)."""
    specials = {str(t) for t in getattr(tokenizer, "all_special_tokens", None) or ()}
    specials |= {
        t.content for t in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values() if t.special
    }
    if not any(special and special in documents_text for special in specials):
        return encode(tokenizer, context_text)
    head = context_text[: len(context_text) - len(documents_text)]
    body = tokenizer(documents_text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    return encode(tokenizer, head) + list(body)


def valid_unicode(text: str) -> str:
    """``text`` with lone surrogates as U+FFFD. Undecodable bytes in file names (the documents'
    headers) and in arguments arrive as lone surrogates, which tokenizers refuse; file contents
    are already decoded with replacement characters, so this only makes the rest match."""
    return _SURROGATE.sub("\ufffd", text)


def model_config(model: str | None, convert: bool = True):
    """The model's config, read without weights; ``None`` when it is not available locally (the
    engine still checks the window once the weights load). ``convert=False`` (``--dry-run``,
    which loads no model) reads the default model's config without converting it."""
    from engine.models import default_model_config, is_default, resolve_model_path

    try:
        from transformers import AutoConfig

        if is_default(model) and not convert:
            return default_model_config()
        return AutoConfig.from_pretrained(resolve_model_path(model), local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure only means "check later, in the engine"
        return None


def model_facts(model: str | None, convert: bool = True) -> tuple[int | None, CostModel | None]:
    """What the run plan needs from the model before its weights load: its window, and the cost
    of its blocks for balancing ranks (both ``None`` when the config is not available locally).
    A model the engine cannot run exactly is refused here, before any weights load."""
    from engine.support import check_model_supported

    config = model_config(model, convert)
    if config is None:
        return None, None
    check_model_supported(config)  # UnsupportedModelError: exit 2, naming the type and feature
    return getattr(config, "max_position_embeddings", None), CostModel.for_config(config)


def estimate_plan(
    settings, nproc: int, device: str, ingested, documents_text: str, question: str, command: str = "ask"
) -> dict:
    """What ``--dry-run`` shows: sources, skips, token estimates and the run plan.

    Counts come from the fast tiktoken estimate (``starcli.ingest.estimate_tokens``) since the
    point is to load neither tokenizer nor weights; the plan is made by the same function as a
    real run's (``engine.runplan.make_run_plan``), from the estimate and with every token costing
    the same, so a split across ranks may differ by a block from the run's.
    """
    from engine.models import DEFAULT_MODEL
    from engine.runplan import make_run_plan
    from starcli.ingest import estimate_tokens

    context_tokens = max(estimate_tokens(documents_text), 1)
    query_tokens = max(estimate_tokens(question), 1)
    window, _ = model_facts(settings.model, convert=False)
    plan = make_run_plan(settings.run_settings(command), context_tokens, query_tokens, nproc, device, window)
    return {
        "dry_run": True,
        "model": settings.model or DEFAULT_MODEL,
        "attention": str(plan.attention),
        "device": device,
        "world_size": nproc,
        "block_size": plan.block_size,
        "anchor_size": plan.anchor_size,
        "positions": str(plan.positions),
        "window": window,
        "sources": [{"path": str(d.path), "tokens": d.tokens} for d in ingested.documents],
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in ingested.skipped],
        "context_tokens": context_tokens,
        "query_tokens": estimate_tokens(question),
        "blocks": plan.blocks,
        "blocks_per_rank": plan.blocks_per_rank(),
    }
