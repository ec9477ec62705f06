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
# instruction that keeps small models on the documents instead of their own recollections, and
# asks for citations in the forms the context marks (starcli.citations checks them).
ASK_TEMPLATE = "Answer the question using the documents above.\n\nQuestion: {question}"
# The same, asking for citations (issue 19). Not for the default 135M model: with this sentence it
# answered samples/tinyrepo's port question by echoing the question (tests/test_cli_e2e.py), so
# there the context's [page N] / [line N] marks alone invite citations, which are checked either way.
ASK_CITE_TEMPLATE = (
    "Answer the question using the documents above. Cite where each fact comes from as "
    "[page N] for a PDF or path:line for other files.\n\nQuestion: {question}"
)

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
# The fast estimate counts with the default model's vocabulary; another model's tokenizer may count
# fewer tokens (by well under 4x on ordinary text), so its input is refused before the exact count
# only when even a quarter of the estimate would be.
ESTIMATE_MARGIN = 4
EXACT_DRY_RUN_TOKENS = 2_000_000  # above this the dry run estimates: exact counting costs minutes and GBs


@dataclass(frozen=True)
class Prompt:
    """The context (phase 1) and query (phase 2) as text and as the token ids sent to the engine."""

    context_text: str
    query_text: str
    context_ids: list[int]
    query_ids: list[int]


def ask_instructions(question: str, model: str | None = None) -> str:
    """The user's question wrapped in ``ASK_CITE_TEMPLATE`` for a named model, ``ASK_TEMPLATE``
    for the default one (see the note above the templates)."""
    from engine.models import is_default

    template = ASK_TEMPLATE if is_default(model) else ASK_CITE_TEMPLATE
    return template.format(question=question.strip())


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


def model_shape(model: str | None):
    """The model's shape for the memory estimate (``engine.memory.ModelShape``), read from its
    config without converting or loading anything; None when the config is not available locally."""
    from engine.memory import ModelShape

    config = model_config(model, convert=False)
    try:
        return None if config is None else ModelShape.for_config(config)
    except (AttributeError, TypeError):  # a config without the usual decoder fields: no estimate
        return None


def refuse_far_beyond_window(
    settings, run_settings, context_estimate: int, question: str, nproc: int, device: str, window: int | None
) -> None:
    """Refuse, before the exact count, an input the run plan would refuse anyway: tokenizing a
    200 MB file exactly takes a minute and gigabytes only to be told it is too long. The default
    model's count is the estimate (plus the chat template), so its refusal is decided exactly as
    the plan would; for another model, only when a quarter of the estimate is refused."""
    from engine.errors import BeyondLocalPositionsError, ContextTooLongError
    from engine.models import is_default
    from engine.runplan import make_run_plan
    from starcli.ingest import estimate_tokens

    if window is None:
        return
    margin = 1 if is_default(settings.model) else ESTIMATE_MARGIN
    query_estimate = max(estimate_tokens(question), 1)
    try:
        make_run_plan(run_settings, max(1, context_estimate // margin), query_estimate, nproc, device, window)
    except BeyondLocalPositionsError:
        if settings.fallback != "map-reduce":  # else map-reduce takes any length: nothing to refuse
            make_run_plan(run_settings, max(1, context_estimate), query_estimate, nproc, device, window)
    except ContextTooLongError:
        make_run_plan(run_settings, max(1, context_estimate), query_estimate, nproc, device, window)


def offline_tokenizer(model: str | None):
    """The model's own tokenizer when it is on this machine already (a local directory, a cached
    hub model, the default model once converted), else None; never downloads or converts."""
    from engine.models import existing_conversion, is_default

    try:
        from transformers import AutoTokenizer

        path = existing_conversion() if is_default(model) else model
        return None if path is None else AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception:  # noqa: BLE001 - not available offline: the caller estimates instead
        return None


def estimate_plan(
    settings,
    nproc: int,
    device: str,
    ingested,
    documents_text: str | None,
    question: str,
    command: str = "ask",
) -> dict:
    """What ``--dry-run`` shows: tokens by source, skips, and the run plan as it will run.

    Counts are exact, from the model's own tokenizer and chat template, when the tokenizer is
    on this machine (``offline_tokenizer``) and the estimate is under ``EXACT_DRY_RUN_TOKENS``;
    else they are estimates from the default model's vocabulary, counted document by document
    without a joined copy (``estimate_context_tokens``), and ``counted_with`` says so. The plan is
    made by the same function as a real run's (``engine.runplan.make_run_plan``) from the same
    window and block costs. Past the window the dry run says what the run would do: map-reduce
    over about how many parts (``fallback``), or the refusal the run would give, in its words.
    """
    from engine.errors import BeyondLocalPositionsError, ContextTooLongError
    from engine.models import DEFAULT_MODEL
    from engine.runplan import make_run_plan
    from starcli.ingest import estimate_context_tokens, estimate_tokens, render_documents
    from starcli.tokentree import build_tree, tree_json

    model = settings.model or DEFAULT_MODEL
    estimate = max(estimate_context_tokens(ingested.documents), 1)
    tokenizer = offline_tokenizer(settings.model) if estimate <= EXACT_DRY_RUN_TOKENS else None
    if tokenizer is not None:
        text = documents_text if documents_text is not None else render_documents(ingested.documents)
        prompt = build(tokenizer, text, question, settings.system)
        context_tokens, query_tokens = len(prompt.context_ids), len(prompt.query_ids)
        sources = [(str(d.path), _count(tokenizer, d.text)) for d in ingested.documents]
        counted = {"tokenizer": model, "exact": True}
    else:
        context_tokens, query_tokens = estimate, max(estimate_tokens(question), 1)
        sources = [(str(d.path), d.tokens) for d in ingested.documents]
        why = "" if settings.model is None else f"; {settings.model}'s tokenizer is not on this machine"
        if estimate > EXACT_DRY_RUN_TOKENS:
            why = f"; over {EXACT_DRY_RUN_TOKENS:,} tokens the dry run does not count exactly"
        counted = {"tokenizer": f"estimate with the {DEFAULT_MODEL} vocabulary{why}", "exact": False}
    window, cost = model_facts(settings.model, convert=False)
    run_settings = settings.run_settings(command)
    fallback = None
    try:
        plan = make_run_plan(run_settings, context_tokens, query_tokens, nproc, device, window, cost)
    except BeyondLocalPositionsError as exc:
        if settings.fallback != "map-reduce":
            raise _refused(exc, counted["exact"]) from None
        from starcli.mapreduce import check_part_count, estimated_parts

        check_part_count(context_tokens, query_tokens, window, command)  # refused as the run would
        fallback = {
            "fallback": "map-reduce",
            "parts": estimated_parts(context_tokens, query_tokens, window, command),
        }
        part = min(context_tokens, window // 2)  # what one part's plan looks like: it fits the window
        plan = make_run_plan(run_settings, part, query_tokens, 1, device, window, cost)
    except ContextTooLongError as exc:
        raise _refused(exc, counted["exact"]) from None
    memory = _memory_plan(settings, plan, cost)
    return {
        "dry_run": True,
        "model": model,
        "counted_with": counted,
        "attention": str(plan.attention),
        "device": device,
        "world_size": plan.world_size,
        "block_size": plan.block_size,
        "anchor_size": plan.anchor_size,
        "correction": str(plan.correction),
        "delta_stride": plan.delta_stride,
        "kv_dtype": str(plan.kv_dtype),
        "positions": str(plan.positions),
        "window": window,
        "sources": [{"path": path, "tokens": tokens} for path, tokens in sources],
        "tree": tree_json(build_tree(sources)),
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in ingested.skipped],
        "context_tokens": context_tokens,
        "query_tokens": query_tokens,
        "blocks": plan.blocks,
        "blocks_per_rank": plan.blocks_per_rank(),
        "ranks": _rank_spans(plan),
        "query_position": plan.context_span,
        "max_tokens": plan.max_tokens,
        "fallback": None,
        "memory": memory,
        **(fallback or {}),
    }


def _memory_plan(settings, plan, cost) -> dict | None:
    """The dry run's memory figures (``engine.memory``): the estimated peak of the device that
    needs most and what it has free, refused as the run would refuse it; None without a config."""
    from engine import memory, memory_budget

    shape = model_shape(settings.model)
    if shape is None:
        return None
    budget = memory_budget.probe_budget(plan, settings.nnodes, every_gpu=True)
    if budget is not None and plan.options.memory_check:
        memory_budget.check_budget(plan, shape, budget, cost)
    estimates = memory.estimate(plan, shape)
    worst = max(estimates, key=lambda e: e.peak)
    shared = budget if budget is not None else memory_budget.Budget(0, 1, plan.device)
    return {
        "peak_bytes": memory_budget.needed(estimates, shared),
        "weights_bytes": worst.weights,
        "kv_cache_bytes": worst.kv_cache,
        "work_bytes": worst.work,
        "free_bytes": budget.free if budget is not None else None,
        "where": shared.where,
        "ranks_sharing": shared.ranks_per_device,
    }


def _refused(exc, exact: bool):
    """The run plan's refusal, as the dry run reports it: by how much the input exceeds the window."""
    from engine.errors import ContextTooLongError

    how = "" if exact else ", estimated"
    return ContextTooLongError(
        exc.needed,
        exc.limit,
        exc.context_tokens,
        exc.query_tokens,
        exc.max_tokens,
        message=f"the input exceeds the window ({exc.needed:,} > {exc.limit:,} tokens{how}), "
        f"so the run would stop: {exc}",
    )


def _count(tokenizer, text: str) -> int:
    """Tokens of one document as the context holds it (special-token text stays text)."""
    return len(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def _rank_spans(plan) -> list[dict]:
    """Per rank: its blocks (first, last), the context tokens they hold [start, stop) and the
    positions they are encoded at [first, last + 1) (the same as the tokens with global positions)."""
    spans = []
    for rank, own in enumerate(plan.layout.ranks):
        if not own:
            spans.append({"rank": rank, "blocks": [], "tokens": [0, 0], "positions": [0, 0]})
            continue
        blocks = plan.layout.blocks
        starts = [plan.block_position(i) for i in own]
        ends = [plan.block_position(i) + blocks[i][1] - blocks[i][0] for i in own]
        spans.append(
            {
                "rank": rank,
                "blocks": [own[0], own[-1]],
                "tokens": list(plan.layout.rank_span(rank)),
                "positions": [min(starts), max(ends)],
            }
        )
    return spans
