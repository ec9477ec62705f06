"""Render bench/speed.py JSON into a markdown table and PNG plots (plots need matplotlib, which
the GPU machines carry; without it only the tables are written).

    python bench/speed_report.py docs/bench-h100.json [more.json ...] --md tables.md --png docs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _fmt(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def table(report: dict) -> str:
    rates = report.get("rates", {})
    lines = [
        f"**{report.get('device')}**, {report.get('date')}, torch {report.get('torch')}, "
        f"transformers {report.get('transformers')}",
        "",
        f"Command: `{report.get('command')}`",
        "",
        *([f"Note: {report['note']}", ""] if report.get("note") else []),
        "Measured ceilings: "
        + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in rates.items() if isinstance(v, (int, float))),
        "",
        "| mode | GPUs | context | block | TTFT s (floor) | phase 1 per rank s (floor) "
        "| decode ms/token (floor) | peak GiB per GPU | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(
                f"| {r.get('mode', '')} | {r.get('gpus')} | {r.get('context', '')} | | | | | | {r['error']} |"
            )
            continue
        ranks = " / ".join(_fmt(x) for x in r["phase1_rank_s"])
        notes = []
        if r.get("compiled"):
            notes.append("compiled")
        if r.get("fused"):
            notes.append("fused")
        if r.get("anchor_shared"):
            notes.append("anchor sent by rank 0")
        if r.get("blocks_per_rank") and r["gpus"] > 1:
            notes.append("blocks " + "+".join(str(x) for x in r["blocks_per_rank"]))
        if r.get("delta_stride"):
            ratio = r.get("phase1_vs_plain")
            notes.append(
                f"delta γ={r['delta_stride']}" + (f": phase 1 {ratio:.3f}× plain star" if ratio else "")
            )
        if r.get("phase1_floor_sustained_s"):
            notes.append(f"phase-1 floor at sustained rates {_fmt(r['phase1_floor_sustained_s'])}")
        if r.get("repeat"):
            notes.append(f"repeat {r['repeat']}")
        if r["mode"] != "global":
            notes.append(
                "graph decode" if r.get("decode_graph") else f"eager decode ({r.get('graph_fallback')})"
            )
        lines.append(
            f"| {r['mode']} | {r['gpus']} | {r['context'] // 1024}K | "
            f"{'' if not r.get('block') else str(r['block'] // 1024) + 'K'} | "
            f"{_fmt(r['ttft_s'])} ({_fmt(r.get('ttft_floor_s'))}) | "
            f"{ranks} ({_fmt(r.get('phase1_floor_s'))}) | "
            f"{_fmt(r['decode_ms'], 1)} ({_fmt(r.get('decode_floor_ms'), 1)}) | "
            f"{' / '.join(_fmt(x, 1) for x in r['peak_gib'])} | {', '.join(notes)} |"
        )
    return "\n".join(lines) + "\n"


def plots(reports: list[dict], folder: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for rep in reports for r in rep["runs"] if "error" not in r]
    series: dict[str, list[tuple[int, float]]] = {}
    for r in runs:
        label = f"{r['mode']} {r['gpus']} GPU" + (f" b{r['block'] // 1024}K" if r.get("block") else "")
        label += " compiled" if r.get("compiled") else ""
        series.setdefault(label, []).append((r["context"], r["ttft_s"]))
    out = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] / 1024 for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context tokens (K)")
    ax.set_ylabel("time to first token (s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.append(folder / f"{stem}-ttft.png")
    fig.savefig(out[-1], dpi=110)
    dense = {r["context"]: r["ttft_s"] for r in runs if r["mode"] == "global" and not r.get("compiled")}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in sorted(series.items()):
        if label.startswith("global"):
            continue
        pts = sorted((n, dense[n] / t) for n, t in points if n in dense)
        if pts:
            ax.plot([p[0] / 1024 for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context tokens (K)")
    ax.set_ylabel("speed-up of TTFT over dense on 1 GPU")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.append(folder / f"{stem}-speedup.png")
    fig.savefig(out[-1], dpi=110)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+")
    p.add_argument("--md", default=None, help="write the tables here (default: print)")
    p.add_argument("--png", default=None, help="folder for the plots")
    p.add_argument("--stem", default="bench")
    args = p.parse_args()
    reports = [json.loads(Path(f).read_text()) for f in args.reports]
    text = "\n".join(table(r) for r in reports)
    if args.md:
        Path(args.md).write_text(text)
    else:
        print(text)
    if args.png:
        try:
            for path in plots(reports, Path(args.png), args.stem):
                print(f"wrote {path}")
        except ImportError:
            print("matplotlib is not installed: no plots")


if __name__ == "__main__":
    main()
