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

from bench.accuracy_plot import PALETTE, Canvas, text_width, write_png


def _label(run: dict) -> str:
    n = run["context"]
    size = f"{n >> 20}M" if n >= 1 << 20 else f"{n >> 10}K"
    return f"{size} {'fp8' if run['kv_dtype'] == 'fp8' else 'bf16'}"


def panel(canvas: Canvas, top: int, title: str, groups: list[str], series: list[str], values) -> int:
    """Bars of ``values[g][s]`` scaled to the panel's largest value, each labelled with its value."""
    left, plot_w, height = 70, canvas.width - 90, 220
    base = top + 30 + height
    canvas.text(left, top, title)
    peak = max(v for row in values for v in row if v is not None) or 1.0
    group_w = plot_w // len(groups)
    bar_w = max(8, (group_w - 30) // len(series))
    for g, name in enumerate(groups):
        x = left + g * group_w + 15
        for s, value in enumerate(values[g]):
            if value is not None:
                y = base - round(value / peak * height)
                canvas.rect(x, y, x + bar_w - 3, base, PALETTE[(s + 1) % len(PALETTE)])
                label = f"{value:.1f}"
                scale = 2 if text_width(label) <= bar_w else 1
                canvas.text(
                    x + (bar_w - 3 - text_width(label, scale)) // 2, y - 7 * scale, label, scale=scale
                )
            x += bar_w
        canvas.text(left + g * group_w + (group_w - text_width(name)) // 2, base + 8, name)
    canvas.rect(left, base, left + plot_w, base + 2, (0, 0, 0))
    x, y = left, base + 32
    for s, name in enumerate(series):
        canvas.rect(x, y, x + 12, y + 12, PALETTE[(s + 1) % len(PALETTE)])
        x = canvas.text(x + 18, y + 1, name) + 24
    return y + 28


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
