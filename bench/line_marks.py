"""Token cost of the ``[line N]`` marks that let the model cite ``path:line`` (starcli.citations).

Counts every non-PDF document of the given sources with the default model's vocabulary (exact
for it: starcli.tokens) without marks and with a mark every N lines, for several N; prints JSON.

    python bench/line_marks.py samples > docs/citations.json
"""

from __future__ import annotations

import argparse
import json

from starcli.citations import LINE_MARK_EVERY, mark_lines
from starcli.ingest import ingest
from starcli.tokens import estimate_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--every", type=int, nargs="+", default=[1, 5, LINE_MARK_EVERY, 20])
    args = parser.parse_args()
    documents = [d for d in ingest(args.sources).documents if d.kind != "pdf"]
    plain = {d.path: estimate_tokens(d.text) for d in documents}
    result = {"default_every": LINE_MARK_EVERY, "documents": len(documents), "tokens": sum(plain.values())}
    for every in args.every:
        marked = {d.path: estimate_tokens(mark_lines(d.text, every)) for d in documents}
        extra = sum(marked.values()) - sum(plain.values())
        result[f"every_{every}"] = {
            "extra_tokens": extra,
            "overhead": round(extra / sum(plain.values()), 4),
            "per_document": {p: round(marked[p] / plain[p] - 1, 4) for p in plain if plain[p]},
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
