"""python -m bench.quality {check,run,report}: see bench/quality/__init__.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_WORK = "/tmp/starcli-quality"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="put the documents in place and check every answer's evidence")
    check.add_argument("--work", default=DEFAULT_WORK, help="work directory (emptied)")

    run = commands.add_parser("run", help="run the systems on the items, write the results JSON")
    run.add_argument("--work", default=DEFAULT_WORK, help="work directory (emptied)")
    run.add_argument("--out", default="docs/quality.json")
    run.add_argument("--only", nargs="+", metavar="ID", help="items whose id starts with one of these")
    run.add_argument("--limit", type=int, help="only the first N (selected) items")
    run.add_argument(
        "--systems",
        default="star,global,generate,greedy",
        help="built-in systems, comma-separated: star, global (starcli), generate, greedy (transformers)",
    )
    run.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:FIELD=VALUE,...",
        help="one more starcli system: default settings with Settings/GenerationSettings fields changed, "
        "e.g. star-rp:repetition_penalty=1.1,no_repeat_ngram=0 (repeatable)",
    )
    run.add_argument(
        "--no-reuse",
        action="store_true",
        help="one Engine.run per item (default: a context shared by several items is encoded once)",
    )
    run.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a 2-core machine shared with other jobs, 2 threads made "
        "decoding 10x slower; 0: torch's own choice)",
    )
    run.add_argument("--seed", type=int, default=0, help="sampling seed (every system, every item)")
    run.add_argument("--machine", help="how to name the machine in the results")
    run.add_argument("--resume", action="store_true", help="keep the results already in --out, run the rest")

    report = commands.add_parser(
        "report", help="markdown tables from results JSONs (runs over the same items)"
    )
    report.add_argument("results", nargs="*", default=["docs/quality.json"])

    args = parser.parse_args(argv)
    if args.command == "check":
        from bench.quality.check import check_all

        return check_all(Path(args.work))
    if args.command == "run":
        from bench.quality.run import run as run_all
        from bench.quality.run import systems_from

        names = [n.strip() for n in args.systems.split(",") if n.strip()]
        systems = systems_from(names, args.variant, reuse=not args.no_reuse)
        run_all(args, systems)
        return 0
    from bench.quality.report import markdown, merged

    sys.stdout.write(markdown(merged([json.loads(Path(path).read_text()) for path in args.results])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
