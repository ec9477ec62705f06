"""Tables and a plot from ``bench.long_inputs``' JSON, written into ``docs/long-inputs.md``.

    python -m bench.long_inputs_report docs/long-inputs.json \
        --md docs/long-inputs.md --png docs/long-inputs.png

Only the text between the ``results`` markers of the Markdown file is replaced. Accuracies are
RULER's (mean string-match score x 100) with 95% Wilson intervals, n = questions. The headline
pools the *number needles* (``niah_single_2``, ``niah_noise_number``, ``niah_essay_number``): the
needle tasks the 135M default model answers within its window (docs/accuracy.md); the others are
in the per-task table. "% of 1x" is against global positions at the window's length (the exact
model, the within-window reference).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from bench.accuracy_plot import _FONT, PALETTE, Canvas, text_width, write_png
from bench.accuracy_report import wilson

START, END = "<!-- results:start -->", "<!-- results:end -->"
HEADLINE = ("niah_single_2", "niah_noise_number", "niah_essay_number")
TASK_ORDER = (
    "niah_single_2",
    "niah_noise_number",
    "niah_essay_number",
    "niah_essay_word",
    "niah_essay_uuid",
    "niah_multivalue",
    "niah_multiquery",
)
REFERENCE = "global"
_FONT.setdefault("+", "02720")  # the 3x5 font has no plus sign; "local 2K+4K" needs one
COLORS = [*PALETTE, (23, 190, 207), (140, 86, 75), (188, 189, 34)]


class Results:
    def __init__(self, data: dict):
        self.meta = data["meta"]
        self.records = data["records"]
        self.lengths = sorted({r["target_tokens"] for r in self.records})
        self.configs = [c for c in self.meta["configs"] if any(r["config"] == c for r in self.records)]
        self.window = self.meta.get("window", 8192)
        self.cells: dict[tuple, list[dict]] = defaultdict(list)
        for r in self.records:
            self.cells[(r["target_tokens"], r["config"])].append(r)

    def select(self, length: int, config: str, tasks=HEADLINE) -> list[dict]:
        return [r for r in self.cells.get((length, config), []) if r["task"] in tasks]

    def acc(self, length: int, config: str, tasks=HEADLINE) -> tuple[float, int] | None:
        rs = self.select(length, config, tasks)
        if not rs:
            return None
        return 100 * sum(r["score"] for r in rs) / len(rs), len(rs)

    def reference(self, tasks=HEADLINE) -> float | None:
        within = [length for length in self.lengths if length <= self.window]
        if not within:
            return None
        got = self.acc(max(within), REFERENCE, tasks)
        return got[0] if got else None

    def multiple(self, length: int) -> str:
        x = length / self.window
        return "1x" if length <= self.window else f"{x:.0f}x"


def _cell(got: tuple[float, int] | None, ci: bool = True, row_n: int | None = None) -> str:
    """``mean [interval]``, with the cell's n where it differs from its row's."""
    if got is None:
        return "–"
    mean, n = got
    own_n = f" (n={n})" if row_n is not None and n != row_n else ""
    if not ci:
        return f"{mean:.0f}{own_n}"
    lo, hi = wilson(mean / 100, n)
    return f"{mean:.0f} [{lo:.0f}–{hi:.0f}]{own_n}"


def header(res: Results) -> list[str]:
    m = res.meta
    runs = [
        f"- `{run['command']}`: {run['status']}, {(run['elapsed_s'] or 0) / 60:.1f} min "
        f"({run['started']} to {run['finished']})"
        for run in m.get("runs", [m])
    ]
    return runs + [
        f"- {len(res.records)} answers; model loaded in {m.get('load_s', 0)} s, "
        f"warm-up {m.get('warmup_s', 0)} s",
        f"- model {m['model']} (window {res.window:,}), {m['dtype']} on {m['device']} ({m['device_name']}); "
        f"torch {m['torch']}, transformers {m['transformers']}, Python {m['python']}",
        f"- seed {m['seed']}; samples per length: " + ", ".join(f"{s} {n}" for s, n in m["suites"].items()),
    ]


def headline(res: Results) -> list[str]:
    ref = res.reference()
    out = [
        "### Number needles (niah_single_2, niah_noise_number, niah_essay_number), accuracy % [95% CI]",
        "",
        "| length (prompt tokens) | × window | n | " + " | ".join(res.configs) + " |",
        "|---|---|---|" + "---|" * len(res.configs),
    ]
    for length in res.lengths:
        cells = [res.acc(length, c) for c in res.configs]
        n = max((g[1] for g in cells if g), default=0)
        out.append(
            f"| {length:,} | {res.multiple(length)} | {n} | "
            + " | ".join(_cell(g, row_n=n) for g in cells)
            + " |"
        )
    if ref:
        out += [
            "",
            f"### Same, as % of global positions at the window ({ref:.0f}%)",
            "",
            "| length | × window | " + " | ".join(res.configs) + " |",
            "|---|---|" + "---|" * len(res.configs),
        ]
        for length in res.lengths:
            cells = []
            for c in res.configs:
                got = res.acc(length, c)
                cells.append("–" if got is None else f"{100 * got[0] / ref:.0f}%")
            out.append(f"| {length:,} | {res.multiple(length)} | " + " | ".join(cells) + " |")
    return out


def per_task(res: Results) -> list[str]:
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in res.records)]
    out = [
        "### Every task, accuracy %",
        "",
        "| task | length | n | " + " | ".join(res.configs) + " |",
        "|---|---|---|" + "---|" * len(res.configs),
    ]
    for task in tasks:
        for length in res.lengths:
            cells = [res.acc(length, c, (task,)) for c in res.configs]
            n = max((g[1] for g in cells if g), default=0)
            out.append(
                f"| {task} | {length:,} | {n} | "
                + " | ".join(_cell(g, ci=False, row_n=n) for g in cells)
                + " |"
            )
    return out


_NUMBER = re.compile(r"\d{7}")
_DIGITS = re.compile(r"\d")


def failures(res: Results) -> list[str]:
    """How the number-needle misses look: another key's value, some other number, no number at
    all (a ':' or a line of filler: an answer in form only), or nothing (empty, or an error)."""
    values: dict[tuple, set[str]] = defaultdict(set)
    for r in res.records:
        values[(r["target_tokens"], r["suite"], r["sample"])].update(r["references"])
    out = [
        "### Number-needle misses: another key's value / another number / no number / nothing",
        "",
        "| length | " + " | ".join(res.configs) + " |",
        "|---|" + "---|" * len(res.configs),
    ]
    for length in res.lengths:
        cells = []
        for c in res.configs:
            other = number = text = none = 0
            for r in res.select(length, c):
                if r["score"] >= 1:
                    continue
                if not r["produced"]:
                    none += 1
                    continue
                found = set(_NUMBER.findall(r["prediction"] or ""))
                key = (r["target_tokens"], r["suite"], r["sample"])
                if found & (values[key] - set(r["references"])):
                    other += 1
                elif _DIGITS.search(r["prediction"] or ""):
                    number += 1
                else:
                    text += 1
            cells.append("–" if not res.select(length, c) else f"{other} / {number} / {text} / {none}")
        out.append(f"| {length:,} | " + " | ".join(cells) + " |")
    return out


def produced(res: Results) -> list[str]:
    out = [
        "### Answers produced (every task): % non-empty, and errors",
        "",
        "| length | " + " | ".join(res.configs) + " |",
        "|---|" + "---|" * len(res.configs),
    ]
    for length in res.lengths:
        cells = []
        for c in res.configs:
            rs = res.cells.get((length, c), [])
            if not rs:
                cells.append("–")
                continue
            errors = sum(1 for r in rs if r["error"])
            share = 100 * sum(r["produced"] for r in rs) / len(rs)
            cells.append(f"{share:.0f}%" + (f", {errors} errors" if errors else ""))
        out.append(f"| {length:,} | " + " | ".join(cells) + " |")
    return out


def timing(res: Results) -> list[str]:
    out = [
        "### Phase 1 (context encoding), median seconds per sample; blocks",
        "",
        "| length | " + " | ".join(res.configs) + " |",
        "|---|" + "---|" * len(res.configs),
    ]
    for length in res.lengths:
        cells = []
        for c in res.configs:
            seen: dict[tuple, dict] = {}
            for r in res.cells.get((length, c), []):
                if r["encode_s"] is not None:
                    seen[(r["suite"], r["sample"])] = r
            if not seen:
                cells.append("–")
                continue
            secs = statistics.median(r["encode_s"] for r in seen.values())
            blocks = statistics.median(r["blocks"] for r in seen.values())
            cells.append(f"{secs:.3f} s ({blocks:.0f})")
        out.append(f"| {length:,} | " + " | ".join(cells) + " |")
    sizes = {}
    for r in res.records:
        if (
            r["config"] not in sizes
            and r["block_size"]
            and r["positions"] == "local"
            and r["target_tokens"] > res.window
        ):
            sizes[r["config"]] = (r["block_size"], r["anchor_size"], r["context_span"])
    out += [
        "",
        "Block / anchor / positions used by the context (span), beyond the window: "
        + "; ".join(f"{c}: {b} / {a} / {s}" for c, (b, a, s) in sizes.items()),
    ]
    return out


def by_depth(res: Results) -> list[str]:
    """Number needles beyond the window, by the needle's depth in the context (quarters)."""
    beyond = [length for length in res.lengths if length > res.window]
    out = [
        "### Number needles beyond the window (all lengths > 1x pooled), by needle depth",
        "",
        "| quarter | n | " + " | ".join(res.configs) + " |",
        "|---|---|" + "---|" * len(res.configs),
    ]
    for q in range(4):
        cells, n = [], 0
        for c in res.configs:
            rs = [
                r
                for length in beyond
                for r in res.select(length, c)
                if r["depths"] and min(3, int(4 * r["depths"][0])) == q
            ]
            n = max(n, len(rs))
            cells.append("–" if not rs else f"{100 * sum(r['score'] for r in rs) / len(rs):.0f}")
        out.append(f"| {q + 1} ({25 * q}–{25 * q + 25}%) | {n} | " + " | ".join(cells) + " |")
    return out


def merge(runs: list[dict]) -> dict:
    """Several runs (say, a longer length run on its own) as one: their records pooled, the
    first run's facts, every run's command, status and time."""
    meta = dict(runs[0]["meta"])
    meta["runs"] = [
        {k: run["meta"].get(k) for k in ("command", "status", "elapsed_s", "started", "finished")}
        for run in runs
    ]
    configs = []
    for run in runs:
        configs += [c for c in run["meta"]["configs"] if c not in configs]
    meta["configs"] = configs
    return {"meta": meta, "records": [r for run in runs for r in run["records"]]}


def render(res: Results) -> str:
    parts = [
        header(res),
        headline(res),
        per_task(res),
        failures(res),
        produced(res),
        by_depth(res),
        timing(res),
    ]
    return "\n\n".join("\n".join(p) for p in parts)


# --- the plot: accuracy against length, one line per configuration ------------------------------
def _line(canvas: Canvas, x0: int, y0: int, x1: int, y1: int, color, width: int = 2) -> None:
    steps = max(abs(x1 - x0), abs(y1 - y0), 1)
    for i in range(steps + 1):
        x = x0 + (x1 - x0) * i // steps
        y = y0 + (y1 - y0) * i // steps
        canvas.rect(x - width // 2, y - width // 2, x - width // 2 + width, y - width // 2 + width, color)


def plot(res: Results, path: Path) -> None:
    canvas = Canvas(1000, 540)
    left, top, width, height = 80, 50, 860, 400
    base = top + height
    canvas.text(left, 12, "NUMBER NEEDLES: ACCURACY % VS PROMPT LENGTH (X WINDOW), 95% CI", scale=2)
    for tick in range(0, 101, 25):
        y = base - tick * height // 100
        canvas.rect(left, y, left + width, y + 1, (225, 225, 225))
        canvas.text(left - text_width(str(tick)) - 8, y - 5, str(tick))
    count = len(res.lengths)
    xs = [left + 30 + i * (width - 60) // max(1, count - 1) for i in range(count)]
    for x, length in zip(xs, res.lengths):
        canvas.rect(x, top, x + 1, base, (235, 235, 235))
        label = f"{round(length / 1024)}K {res.multiple(length).upper()}"
        canvas.text(x - text_width(label) // 2, base + 10, label)
    ref = res.reference()
    if ref is not None:  # 90% of the within-window reference: the target
        y = base - round(0.9 * ref * height / 100)
        for x in range(left, left + width, 12):
            canvas.rect(x, y, x + 6, y + 2, (200, 60, 60))
        canvas.text(left + width - text_width("90% OF 1X") - 4, y - 14, "90% OF 1X", (200, 60, 60))
    for s, config in enumerate(res.configs):
        color = COLORS[s % len(COLORS)]
        offset = (s - len(res.configs) // 2) * 4
        points = []
        for x, length in zip(xs, res.lengths):
            got = res.acc(length, config)
            if got is None:
                continue
            mean, n = got
            lo, hi = wilson(mean / 100, n)
            px, py = x + offset, base - round(mean * height / 100)
            canvas.rect(px, base - round(hi * height / 100), px + 1, base - round(lo * height / 100), color)
            canvas.rect(px - 4, py - 4, px + 5, py + 5, color)
            points.append((px, py))
        for (ax, ay), (bx, by) in zip(points, points[1:]):
            _line(canvas, ax, ay, bx, by, color)
    x, y = left, base + 40
    for s, config in enumerate(res.configs):
        name = config.upper()
        if x + text_width(name) + 40 > left + width:
            x, y = left, y + 22
        canvas.rect(x, y, x + 12, y + 12, COLORS[s % len(COLORS)])
        x = canvas.text(x + 18, y + 1, name) + 28
    write_png(path, canvas)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("json", type=Path, nargs="+", help="one run's JSON, or several to pool")
    parser.add_argument("--md", type=Path, default=Path("docs/long-inputs.md"))
    parser.add_argument("--png", type=Path, default=Path("docs/long-inputs.png"))
    args = parser.parse_args(argv)
    res = Results(merge([json.loads(path.read_text()) for path in args.json]))
    block = f"{START}\n{render(res)}\n{END}"
    text = args.md.read_text() if args.md.is_file() else f"# Long inputs\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    args.md.write_text(head + block + tail)
    plot(res, args.png)
    print(f"wrote {args.md} and {args.png}")


if __name__ == "__main__":
    main()
