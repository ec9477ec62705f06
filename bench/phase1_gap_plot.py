"""Plot ``bench/phase1_gap.py`` results: the matmul and attention rates held back to back (per
window, against the burst rate the burst floor divides by), and each call's phase-1 runs against
its burst and held floors. matplotlib is not a dependency of starcli; install it to plot.

    python bench/phase1_gap_plot.py docs/phase1-gap-s11a.json docs/phase1-gap-s12a.json \
        --png docs/phase1-gap.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RATES = (
    ("matmul", "matmul_tflops", "matmul 8192³"),
    ("attn", "causal_attn_16k_tflops", "causal attention 16K"),
)


def held(report: dict, kind: str) -> dict | None:
    """The held-rate record of ``kind`` (``matmul``/``attn``): newer files keep it under ``rates``,
    the first (``s11a``) under ``sustained``."""
    first = report.get("sustained", {})
    return report["rates"].get(f"{kind}_sustained") or first.get({"attn": "causal_attn_16k"}.get(kind, kind))


def phase1_runs(report: dict) -> list[float]:
    """Every plain phase-1 time of a call: the timed runs and the A/B's ``base`` runs."""
    return report["phase1_s"] + [r["phase1_s"] for r in report.get("ab", []) if r["variant"] == "base"]


def held_floor(report: dict) -> float | None:
    """The floor at the held rates: as the file has it, else (the first file, written before
    ``bench.speed.floors`` knew held rates) computed by ``floors`` from the held medians."""
    if "phase1_floor_sustained_s" in report["floor"]:
        return report["floor"]["phase1_floor_sustained_s"]
    mm, attn = held(report, "matmul"), held(report, "attn")
    if not (mm and attn):
        return None
    from bench.speed import build_config_only, floors

    rates = dict(report["rates"], matmul_sustained_tflops=mm["median_tflops"])
    rates["attn_sustained_tflops"] = attn["median_tflops"]
    length, block = _length_block(report["command"])
    return floors("star", length, block, 1, rates, build_config_only())["phase1_floor_sustained_s"]


def _length_block(command: str) -> tuple[int, int]:
    """``--length``/``--block`` of the command that wrote the file (its defaults where absent)."""
    words = command.split()
    value = {w: int(words[i + 1]) for i, w in enumerate(words[:-1]) if w in ("--length", "--block")}
    return value.get("--length", 131072), value.get("--block", 16384)


def plot(reports: list[tuple[str, dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.3))
    for ax, (kind, burst_key, title) in zip(axes[:2], RATES):
        for (name, rep), color in zip(reports, ("tab:blue", "tab:orange", "tab:green")):
            rec = held(rep, kind)
            if rec:
                ax.plot(range(1, len(rec["windows"]) + 1), rec["windows"], color=color, label=f"{name} held")
            ax.axhline(rep["rates"][burst_key], color=color, linestyle="--", label=f"{name} burst")
        ax.set_title(f"{title}, back to back")
        ax.set_xlabel("window (20 calls each)")
        ax.set_ylabel("TFLOP/s")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    for i, (_, rep) in enumerate(reports):
        runs = phase1_runs(rep)
        ax.scatter([i] * len(runs), runs, color="black", zorder=3, label="phase 1 runs" if i == 0 else None)
        burst = rep["floor"]["phase1_floor_s"]
        ax.hlines(burst, i - 0.3, i + 0.3, color="tab:red", label="burst floor" if i == 0 else None)
        ax.hlines(
            1.15 * burst,
            i - 0.3,
            i + 0.3,
            color="tab:red",
            linestyle=":",
            label="1.15 × burst floor" if i == 0 else None,
        )
        floor = held_floor(rep)
        if floor:
            ax.hlines(floor, i - 0.3, i + 0.3, color="tab:green", label="held floor" if i == 0 else None)
    ax.set_xticks(range(len(reports)), [name for name, _ in reports])
    ax.set_xlim(-0.6, len(reports) - 0.4)
    ax.set_ylabel("phase 1 at 128K, 16K blocks (s)")
    ax.set_title("phase 1 against its floors")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+")
    p.add_argument("--png", required=True)
    args = p.parse_args()
    reports = [
        (Path(f).stem.removeprefix("phase1-gap-"), json.loads(Path(f).read_text())) for f in args.reports
    ]
    plot(reports, Path(args.png))
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
