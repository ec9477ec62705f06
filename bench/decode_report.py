"""The plot of ``bench/decode_profile.py``'s JSON: for every run, decode ms a token beside its
memory floor, and TTFT in seconds, as bars scaled to the largest value of each panel (PNG through
``bench.accuracy_plot``'s writer: no plotting dependency).

    python bench/decode_report.py docs/decode-profile.json docs/decode-final-128k.json \
        --png docs/decode-profile.png

Several files: a later file's run of the same context and KV dtype replaces an earlier one's
(a re-measurement after a change), in the order the runs first appear.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.accuracy_plot import Canvas, bar_panel, write_png


def _label(run: dict) -> str:
    n = run["context"]
    size = f"{n >> 20}M" if n >= 1 << 20 else f"{n >> 10}K"
    return f"{size} {'fp8' if run['kv_dtype'] == 'fp8' else 'bf16'}"


def panel(canvas: Canvas, top: int, title: str, groups: list[str], series: list[str], values) -> int:
    """``bar_panel`` of values in any unit, scaled to the panel's largest, labelled to 0.1."""
    peak = max(v for row in values for v in row if v is not None)
    return bar_panel(canvas, top, title, groups, series, values, height=220, peak=peak, digits=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("json", type=Path, nargs="+")
    parser.add_argument("--png", type=Path, required=True)
    args = parser.parse_args()
    by_key: dict[tuple, dict] = {}
    for path in args.json:
        for run in json.loads(path.read_text())["runs"]:
            if "error" not in run and run.get("weights", "triton") == "triton":
                by_key[(run["context"], run["kv_dtype"] == "fp8")] = run
    runs = list(by_key.values())
    groups = [_label(r) for r in runs]
    canvas = Canvas(900, 700)
    y = panel(
        canvas,
        20,
        "decode ms a token, H200, 8B shape",
        groups,
        ["decode", "floor"],
        [[r["decode_ms"], r["decode_floor_ms"]] for r in runs],
    )
    panel(
        canvas,
        y + 10,
        "TTFT s and peak GiB / 10",
        groups,
        ["TTFT", "peak/10"],
        [[r["ttft_s"], r["peak_gib"] / 10] for r in runs],
    )
    write_png(args.png, canvas)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
