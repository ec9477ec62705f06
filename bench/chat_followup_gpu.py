"""How soon a follow-up in a chat starts answering on a GPU at the 8B shape (issue 14's target:
0.3 s at 128K tokens): the engine's chat path (``Engine.answer(follow_up=True)``, what
``starcli chat`` runs on the query host) over random weights at Llama-3.1-8B's shape, bf16.

Phase 1 once over ``--tokens`` random context tokens, a first question, then follow-ups; for each
follow-up the time from the call to its first answer token (measured here, synchronised) and the
engine's own ``ttft_s``. Weights are random, so the answers are noise; the timing is the point.

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


class _NumberTokenizer:
    """Token ids as numbers: random weights need no vocabulary, the decoder only text to stream."""

    eos_token_id = None

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join(map(str, ids))


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine import Engine, GenerationSettings, RunSettings, Stats, Token
    from engine.settings import Attention

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=131072)
    parser.add_argument("--follow-ups", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    config = LlamaConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=args.tokens + 4096,
        rope_theta=500000.0,
    )
    started = time.perf_counter()
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    build_s = time.perf_counter() - started
    engine = Engine(model, _NumberTokenizer())
    generator = torch.Generator().manual_seed(0)
    context = torch.randint(1000, 100000, (args.tokens,), generator=generator).tolist()
    question = torch.randint(1000, 100000, (40,), generator=generator).tolist()
    generation = GenerationSettings.plain(max_tokens=args.max_tokens)
    settings = RunSettings(attention=Attention.STAR, generation=generation)
    plan = engine.plan(settings, len(context), len(question) + 40 * args.follow_ups)
    torch.cuda.synchronize()
    started = time.perf_counter()
    gen = engine.encode_context(context, plan)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        encoded = stop.value
    torch.cuda.synchronize()
    phase1_s = time.perf_counter() - started
    turns = []
    for index in range(args.follow_ups + 1):
        query = question if index == 0 else torch.randint(1000, 100000, (24,), generator=generator).tolist()
        torch.cuda.synchronize()
        sent = time.perf_counter()
        first = None
        stats = None
        for event in engine.answer(encoded, query, index, generation, follow_up=index > 0):
            if isinstance(event, Token) and first is None:
                torch.cuda.synchronize()
                first = time.perf_counter() - sent
            if isinstance(event, Stats):
                stats = event
        torch.cuda.synchronize()
        turns.append(
            {
                "turn": index,
                "follow_up": index > 0,
                "query_tokens": len(query),
                "first_token_s": first,
                "engine_ttft_s": stats.ttft_s,
                "answer_s": time.perf_counter() - sent,
                "generated_tokens": stats.generated_tokens,
            }
        )
        print(json.dumps(turns[-1]), flush=True)
    report = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "shape": "Llama-3.1-8B (random weights), bf16",
        "context_tokens": len(context),
        "blocks": plan.blocks,
        "build_model_s": build_s,
        "phase1_s": phase1_s,
        "turns": turns,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "turns"}))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
