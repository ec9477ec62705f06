"""How soon a follow-up in a chat starts answering on a GPU at the 8B shape (issue 14's target:
0.3 s at 128K tokens): the engine's chat path (``Engine.answer(follow_up=True)``, what
``starcli chat`` runs on the query host) over random weights at Llama-3.1-8B's shape, bf16.

Phase 1 once over ``--tokens`` random context tokens, a first question, then follow-ups of
``--lengths`` tokens each (a length not seen before shows what a new shape costs, a repeated one
the steady state); for each the time from the call to its first answer token (measured here,
synchronised), the engine's own ``ttft_s`` and the decode graph's capture time. Weights are random,
so the answers are noise; the timing is the point. ``--few-causal cudnn`` runs the query's causal
square on cuDNN as before (``kernels.cuda_attention.FEW_CAUSAL_BACKEND``), for the comparison.

``--probe`` first times, on bare tensors at the 8B shape, what a new query length costs on first
use and on the next call: the causal square on cuDNN (a graph built per shape and stride) and on
flash, and the split-KV Triton kernel over 128K keys (compiled per query length while that length
is a ``tl.constexpr``).

    python bench/chat_followup_gpu.py --tokens 131072 --out docs/chat-followup-gpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


LLAMA_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}
SMALL = {**LLAMA_8B, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2}


class _NumberTokenizer:
    """Token ids as numbers: random weights need no vocabulary, the decoder only text to stream."""

    eos_token_id = None

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join(map(str, ids))


def timed(fn) -> float:
    """Seconds one call of ``fn`` takes on the GPU, synchronised on both sides."""
    import torch

    torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - started


def probe_first_calls(lengths: list[int], context: int) -> list[dict]:
    """First and second call of each kernel at each query length, none of them seen before."""
    import torch

    from kernels import cuda_attention as ca
    from kernels import triton_attention as tri

    rows = []
    scale = 128**-0.5
    ctx_k = torch.randn(1, 8, context, 128, device="cuda", dtype=torch.bfloat16)
    ctx_v = torch.randn_like(ctx_k)
    for lq in lengths:
        q = torch.randn(1, 32, lq, 128, device="cuda", dtype=torch.bfloat16)
        buffer = torch.randn(1, 8, 4 * lq, 128, device="cuda", dtype=torch.bfloat16)
        k, v = buffer[:, :, :lq], buffer[:, :, lq : 2 * lq]  # a view into a tail buffer, as in a chat
        repeated = (k.repeat_interleave(4, dim=1), v.repeat_interleave(4, dim=1))
        row = {"query_tokens": lq}
        for name, fn in (
            ("cudnn_causal_square", lambda q=q, k=k, v=v: ca.grouped_cuda(q, k, v, scale, True)),
            ("flash_causal_square", lambda q=q, r=repeated: ca.flash_first_cuda(q, *r, scale, True)),
            ("split_kv_over_context", lambda q=q: tri.split_kv_attention(q, ctx_k, ctx_v, scale)),
        ):
            row[name] = {"first_s": timed(fn), "second_s": timed(fn)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    one = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
    for keys in (4095, 4096, 4111, 4112):  # a decode step over a new tail length: Triton specialises
        fn = lambda n=keys: tri.split_kv_attention(one, ctx_k[:, :, :n], ctx_v[:, :, :n], scale)  # noqa: E731
        row = {
            "query_tokens": 1,
            "key_tokens": keys,
            "split_kv": {"first_s": timed(fn), "second_s": timed(fn)},
        }
        rows.append(row)  # integers on whether they divide by 16: a length of the other kind compiles
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine import Engine, GenerationSettings, RunSettings, Stats, Token
    from engine.settings import Attention
    from kernels import cuda_attention

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=131072)
    parser.add_argument("--question", type=int, default=40, help="the first question's tokens")
    parser.add_argument("--lengths", type=int, nargs="+", default=[24, 24, 24, 24], help="follow-ups' tokens")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--few-causal", choices=("flash", "cudnn"), default=cuda_attention.FEW_CAUSAL_BACKEND)
    parser.add_argument("--probe", type=int, nargs="*", default=None, help="query lengths to probe first")
    parser.add_argument("--device", default="cuda", help="cpu: a check of this script, with --small")
    parser.add_argument("--small", action="store_true", help="a tiny Llama instead of the 8B shape")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cuda_attention.FEW_CAUSAL_BACKEND = args.few_causal
    device = torch.device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    probe = None
    if args.probe:
        try:
            probe = probe_first_calls(args.probe, args.tokens)
        except Exception as exc:  # noqa: BLE001 - the chat's figures below still count
            probe = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            print(json.dumps(probe), flush=True)
    shape = SMALL if args.small else LLAMA_8B
    config = LlamaConfig(**shape, max_position_embeddings=args.tokens + 4096, rope_theta=500000.0)
    started = time.perf_counter()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with device:
        model = LlamaForCausalLM(config).to(dtype).eval()
    build_s = time.perf_counter() - started
    engine = Engine(model, _NumberTokenizer())
    generator = torch.Generator().manual_seed(0)
    context = torch.randint(1000, 100000, (args.tokens,), generator=generator).tolist()
    question = torch.randint(1000, 100000, (args.question,), generator=generator).tolist()
    generation = GenerationSettings.plain(max_tokens=args.max_tokens)
    settings = RunSettings(attention=Attention.STAR, generation=generation)
    plan = engine.plan(settings, len(context), len(question) + 40 * len(args.lengths))
    sync()
    started = time.perf_counter()
    gen = engine.encode_context(context, plan)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        encoded = stop.value
    sync()
    phase1_s = time.perf_counter() - started
    turns = []
    for index, length in enumerate([len(question), *args.lengths]):
        query = (
            question if index == 0 else torch.randint(1000, 100000, (length,), generator=generator).tolist()
        )
        sync()
        sent = time.perf_counter()
        first = None
        stats = None
        for event in engine.answer(encoded, query, index, generation, follow_up=index > 0):
            if isinstance(event, Token) and first is None:
                sync()
                first = time.perf_counter() - sent
            if isinstance(event, Stats):
                stats = event
        sync()
        turns.append(
            {
                "turn": index,
                "follow_up": index > 0,
                "query_tokens": len(query),
                "fed_tokens": stats.query_tokens,  # with a follow-up's pending token first
                "first_token_s": first,
                "engine_ttft_s": stats.ttft_s,
                "answer_s": time.perf_counter() - sent,
                "generated_tokens": stats.generated_tokens,
                "graph_capture_s": stats.graph_capture_s,
                "graph_fallback": stats.graph_fallback,
            }
        )
        print(json.dumps(turns[-1]), flush=True)
    report = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "shape": f"{'a tiny Llama' if args.small else 'Llama-3.1-8B'} (random weights), {dtype}",
        "few_causal": args.few_causal,
        "context_tokens": len(context),
        "blocks": plan.blocks,
        "build_model_s": build_s,
        "phase1_s": phase1_s,
        "turns": turns,
        "probe": probe,
    }
    print(json.dumps({k: v for k, v in report.items() if k not in ("turns", "probe")}))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
