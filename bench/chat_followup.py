"""How soon a follow-up in ``starcli chat`` starts answering (issue 14's target: within 1 s on CPU).

The chat's own session (``starcli.launch.start_session``, one rank in this process) over the
default model and ``samples/long.txt``: the first question (phase 1 and its answer), then each
follow-up's time from being sent to its first answer token (``Stats.ttft_s``: phase 2 of the new
question over the context and the earlier turns) and to its last.

    OMP_NUM_THREADS=1 python bench/chat_followup.py --out docs/chat-followup-cpu.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from bench.run_report import run_header, write_report  # noqa: E402

QUESTIONS = (
    "What is the serial number of the new lamp?",
    "Who installed it?",
    "When was that?",
    "Summarize the answer above in one sentence.",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--doc", default=str(ROOT / "samples" / "long.txt"))
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from engine.events import Stats
    from engine.request import Request
    from engine.runplan import make_run_plan
    from starcli.config import Settings
    from starcli.ingest import ingest, render_documents
    from starcli.launch import load_tokenizer, start_session
    from starcli.prompt import ask_instructions, build, follow_up_ids, model_facts

    settings = Settings(max_tokens=args.max_tokens)
    tokenizer = load_tokenizer(None)
    prompt = build(tokenizer, render_documents(ingest([args.doc]).documents), ask_instructions(QUESTIONS[0]))
    window, cost = model_facts(None)
    run = settings.run_settings("ask")
    plan = make_run_plan(run, len(prompt.context_ids), len(prompt.query_ids), 1, "cpu", window, cost)
    session = start_session(Request(prompt.context_ids, [prompt.query_ids], run, plan), model=None)
    turns = []
    stats = next(e for e in session.start() if isinstance(e, Stats))
    turns.append({"question": QUESTIONS[0], "phase1_s": stats.context_encoding_s, "ttft_s": stats.ttft_s})
    for index, question in enumerate(QUESTIONS[1:], start=1):
        query = follow_up_ids(tokenizer, ask_instructions(question), stats.stop_reason == "eos")
        sent = time.perf_counter()
        stats = next(e for e in session.ask(query, index, True) if isinstance(e, Stats))
        turns.append(
            {
                "question": question,
                "query_tokens": stats.query_tokens,
                "tail_tokens": stats.tail_tokens,
                "ttft_s": stats.ttft_s,
                "answer_s": time.perf_counter() - sent,
                "generated_tokens": stats.generated_tokens,
                "answer": stats.answer,
            }
        )
    session.close()
    result = {**run_header(args.doc), "context_tokens": len(prompt.context_ids), "turns": turns}
    write_report(result, args.out)


if __name__ == "__main__":
    main()
