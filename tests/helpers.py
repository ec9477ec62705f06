"""Test helpers: tiny configs, a stand-in tokenizer, and the *reference* Star Attention computed
with nothing but the dense Hugging Face model (sdpa + DynamicCache), independent of our code."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator

import torch
from transformers import DynamicCache, LlamaConfig, Qwen2Config

from engine.modelcall import call_model


def tiny_config(arch: str, vocab: int = 101, **overrides):
    """A tiny Llama or Qwen2 config (fp32 tests in seconds); ``overrides`` replace its fields."""
    common = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    common.update(overrides)
    if arch == "llama":
        return LlamaConfig(**common)
    return Qwen2Config(**common, use_sliding_window=False)


class IdTokenizer:
    """Decodes ids as space-separated numbers: enough for greedy-token comparisons."""

    eos_token_id = None
    chat_template = None
    bos_token = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [int(t) for t in text.split()]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(f" {i}" for i in ids)


def save_byte_tokenizer(path) -> None:
    """A real byte-level BPE tokenizer (gpt2-style, no merges), built offline and saved to ``path``
    beside a tiny model, so that a saved tiny model loads like any model directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=core).save_pretrained(path)


def use_dense_attention(model) -> None:
    """transformers' sdpa, or its eager attention where sdpa drops a variant (soft-capping, sinks:
    transformers 5.17 lets Gemma 2 run sdpa without its soft-cap) or the model refuses sdpa."""
    from engine.support import needs_eager_attention

    if needs_eager_attention(model.config):
        model.set_attn_implementation("eager")
        return
    try:
        model.set_attn_implementation("sdpa")
    except ValueError:
        model.set_attn_implementation("eager")


@torch.no_grad()
def dense_greedy(model, ids: list[int], steps: int) -> list[int]:
    """The dense model's greedy continuation, recomputing the full sequence every step."""
    use_dense_attention(model)
    seq = list(ids)
    for _ in range(steps):
        seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids) :]


@torch.no_grad()
def reference_context_cache(
    model, ctx: list[int], block: int, anchor: int, local: bool = False
) -> DynamicCache:
    """The paper's phase 1 done naively with the dense model: block 0 causally; every other
    block as the sequence [anchor, block] (anchor recomputed per block) keeping the block's KV.
    ``local``: that sequence at positions 0.. (window-local positions, issue 13), not the
    block's own indices. Sliding-window layers see it as the model does: transformers masks by
    index in the sequence, so the anchor directly precedes the block (issue 12). The caches keep
    every token (no config: no window-trimmed layers), so the block's KV can be read back."""
    use_dense_attention(model)
    keys = [[] for _ in range(model.config.num_hidden_layers)]
    values = [[] for _ in range(model.config.num_hidden_layers)]
    for start in range(0, len(ctx), block):
        stop = min(start + block, len(ctx))
        a = min(anchor, block, len(ctx)) if start > 0 else 0
        ids = ctx[:a] + ctx[start:stop]
        pos = list(range(a + stop - start)) if local else list(range(a)) + list(range(start, stop))
        cache = DynamicCache()
        call_model(model, torch.tensor([ids]), torch.tensor([pos]), cache, logits_to_keep=0)
        for i, layer in enumerate(cache.layers):
            keys[i].append(layer.keys[:, :, a:])
            values[i].append(layer.values[:, :, a:])
    full = DynamicCache()
    for i in range(model.config.num_hidden_layers):
        full.update(torch.cat(keys[i], dim=2), torch.cat(values[i], dim=2), i)
    return full


@torch.no_grad()
def reference_greedy(model, cache: DynamicCache, position: int, query: list[int], steps: int) -> list[int]:
    """Greedy tokens of the query over a reference context cache, its first token at ``position``."""
    tokens = []
    logits = reference_query_logits(model, cache, position, query)[-1]
    position += len(query)
    for _ in range(steps):
        tokens.append(int(logits.argmax()))
        logits = reference_query_logits(model, cache, position, tokens[-1:])[-1]
        position += 1
    return tokens


@torch.no_grad()
def reference_query_logits(model, cache: DynamicCache, n: int, query: list[int]) -> torch.Tensor:
    """Dense attention of the query over the given context KV plus itself (causal); a window
    counts by index in the cache: the query after the whole context."""
    use_dense_attention(model)
    pos = torch.arange(n, n + len(query)).unsqueeze(0)
    out = call_model(model, torch.tensor([query]), pos, cache, logits_to_keep=0)
    return out.logits[0]


def star_plan(
    context_tokens: int,
    block: int | None,
    anchor: int | None = None,
    world: int = 1,
    *,
    share: bool = False,
    max_tokens: int = 16,
    query_tokens: int = 16,
    attention: str = "star",
):
    """The run plan the engine follows for these settings (``engine.runplan.make_run_plan``)."""
    from engine.runplan import make_run_plan
    from engine.settings import Attention, EngineOptions, GenerationSettings, RunSettings

    settings = RunSettings(
        attention=Attention(attention),
        block_size=block,
        anchor_size=anchor,
        generation=GenerationSettings.plain(max_tokens=max_tokens),
        options=EngineOptions(share_anchor=share),
    )
    return make_run_plan(settings, context_tokens, query_tokens, world)


def settings_of(mode: str = "star", steps: int = 16, **kwargs):
    """``RunSettings`` for a test: an attention mode, an answer length, block/anchor sizes. The KV
    is stored in the model's dtype unless a test asks otherwise (``auto`` is fp8 on CUDA), so that
    exactness tests stay exact on a GPU too."""
    from engine.settings import GenerationSettings, RunSettings

    kwargs.setdefault("kv_dtype", "model")
    return RunSettings(attention=mode, generation=GenerationSettings.plain(max_tokens=steps), **kwargs)


@contextlib.contextmanager
def spawned_ranks(target, procs: int) -> Iterator[str]:
    """The one multi-process harness: run ``target(rank, procs, init_file, out_prefix)`` in
    ``procs`` real processes (each joins a process group through ``file://init_file``), wait for
    all, and yield ``out_prefix`` while the files the ranks wrote under it still exist. The
    processes are the session's pool (``tests.rankpool``), started once for every such test."""
    from tests.rankpool import run_job

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        run_job(target, procs, os.path.join(tmp, "init"), out)
        yield out


def _worker_rank(request_json: str, model: str | None, rank, procs, init_file, out_path):
    """One rank of ``python -m engine`` (``engine.worker.main``, what torchrun starts) in a pooled
    process: torchrun's environment for this rank, and the process group joined through the
    pool's init file instead of torchrun's store."""
    import functools

    import torch.distributed as dist

    from engine import worker
    from starcli.launch import _threads_per_rank

    request_path = f"{out_path}.request.json"
    if rank == 0:
        with open(f"{request_path}.tmp", "w") as handle:
            handle.write(request_json)
        os.rename(f"{request_path}.tmp", request_path)
    else:
        while not os.path.exists(request_path):
            time.sleep(0.01)
    env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": procs, "LOCAL_WORLD_SIZE": procs, "GROUP_RANK": 0}
    saved = {name: os.environ.get(name) for name in env}
    join = dist.init_process_group
    dist.init_process_group = functools.partial(
        join, init_method=f"file://{init_file}", rank=rank, world_size=procs
    )
    threads = torch.get_num_threads()  # the launcher's share of the cores, as torchrun's ranks get
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or _threads_per_rank(procs)))
    try:
        os.environ.update({name: str(value) for name, value in env.items()})
        args = ["--request", request_path, "--events", f"{out_path}.events.jsonl"]
        args += ["--model", model] if model else []
        code = worker.main(args)
    finally:
        dist.init_process_group = join
        torch.set_num_threads(threads)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if code != 0:
        raise RuntimeError(f"rank {rank}: python -m engine exited {code}")


def worker_ranks_run(request, model: str | None) -> list:
    """The events of ``request`` run by ``request.plan.world_size`` ranks of ``python -m engine``
    (the engine's side of a torchrun job: request file, events file, model loaded from ``model``,
    the default model if None) on the session's pooled processes, every rank's events in the
    order written; starcli.launch's torchrun jobs are the CLI tests' (test_cli_e2e, test_faults_cli,
    test_chat, test_launch, ...)."""
    import functools
    import json

    from engine.events import event_from_dict

    target = functools.partial(_worker_rank, request.to_json(), model)
    with spawned_ranks(target, request.plan.world_size) as out:
        with open(f"{out}.events.jsonl") as handle:
            return [event_from_dict(json.loads(line)) for line in handle if line.strip()]
