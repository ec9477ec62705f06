"""Tables and a plot from the accuracy benchmark's JSON, written into ``docs/accuracy.md``.

    python -m bench.accuracy_report docs/accuracy.json --md docs/accuracy.md --png docs/accuracy.png
    python -m bench.accuracy_report RUN.json --md docs/accuracy.md --png docs/accuracy.png \
        --delta-md docs/accuracy-delta.md --delta-png docs/accuracy-delta.png --speed SPEED.json

Only the text between the ``results`` markers of the Markdown file is replaced, so the written
discussion around it survives a regeneration. Accuracies are RULER's: mean string-match score
times 100. Intervals are 95% Wilson intervals on the mean score with n = questions (exact for the
0/1-scored needle tasks, an approximation for the fractional ones); "wins/losses" count the
questions that one configuration answered and the other did not, on the same prompts.
``--delta-md`` also writes the delta correction's tables (``bench.delta_report``: pooled main
suites, paired against dense and plain Star, the issue-15 targets, phase-1 cost from ``--speed``).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from bench.accuracy_plot import Canvas, bar_panel, write_png
from bench.ruler.tasks import TASKS

START, END = "<!-- results:start -->", "<!-- results:end -->"
MAIN_TASKS = ("niah_single_2", "niah_noise_number", "niah_essay_number", "niah_essay_word", "niah_essay_uuid")
STAR_N4 = "star n/4"


def wilson(mean: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 100.0)
    denom = 1 + z * z / n
    centre = (mean + z * z / (2 * n)) / denom
    half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / denom
    return (100 * max(0.0, centre - half), 100 * min(1.0, centre + half))


class Results:
    def __init__(self, data: dict):
        self.meta = data["meta"]
        self.records = data["records"]
        self.lengths = sorted({r["target_tokens"] for r in self.records})
        self.configs = [c for c in self.meta["configs"] if any(r["config"] == c for r in self.records)]
        self.scores: dict[tuple, list[float]] = defaultdict(list)
        self.by_question: dict[tuple, dict[str, float]] = defaultdict(dict)
        for r in self.records:
            self.scores[(r["task"], r["target_tokens"], r["config"])].append(r["score"])
            key = (r["task"], r["target_tokens"], r["suite"], r["sample"], r["question"])
            self.by_question[key][r["config"]] = r["score"]

    def mean(self, task: str, length: int, config: str) -> float | None:
        s = self.scores.get((task, length, config))
        return 100 * sum(s) / len(s) if s else None

    def n(self, task: str, length: int, config: str = "dense") -> int:
        return len(self.scores.get((task, length, config), []))

    def task_average(self, length: int, config: str, tasks) -> float | None:
        """Mean over tasks (each task weighs the same) of the tasks run in both this config and dense."""
        pairs = [(self.mean(t, length, config), self.mean(t, length, "dense")) for t in tasks]
        values = [a for a, b in pairs if a is not None and b is not None]
        return sum(values) / len(values) if values else None

    def wins_losses(self, task: str, length: int, config: str) -> tuple[int, int]:
        wins = losses = 0
        for key, scores in self.by_question.items():
            if key[0] == task and key[1] == length and config in scores and "dense" in scores:
                wins += scores[config] > scores["dense"]
                losses += scores[config] < scores["dense"]
        return wins, losses

    def haystacks(self, task: str, length: int) -> int:
        return len({(k[2], k[3]) for k in self.by_question if k[0] == task and k[1] == length})

    def prompt_tokens(self, length: int) -> tuple[int, int]:
        values = [r["prompt_tokens"] for r in self.records if r["target_tokens"] == length]
        return min(values), max(values)


def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ratio(star: float | None, dense: float | None) -> str:
    if star is None or dense is None:
        return "–"
    return "n/a (dense 0)" if dense == 0 else f"{100 * star / dense:.0f}%"


def summary(res: Results) -> list[str]:
    out = ["### Summary: accuracy averaged over tasks (Star as % of dense)", ""]
    out.append("| length (prompt tokens) | tasks | " + " | ".join(res.configs) + " |")
    out.append("|---|---|" + "---|" * len(res.configs))
    for length in res.lengths:
        lo, hi = res.prompt_tokens(length)
        label = f"{length} ({lo}–{hi})"
        for name, tasks in ((f"main {len(MAIN_TASKS)}", MAIN_TASKS), (f"all {len(TASKS)}", TASKS)):
            dense = res.task_average(length, "dense", tasks)
            cells = []
            for config in res.configs:
                value = res.task_average(length, config, tasks)
                if tasks is TASKS and config not in ("dense", STAR_N4):
                    cells.append("–")
                elif config == "dense":
                    cells.append(_fmt(value, 1))
                else:
                    cells.append(f"{_fmt(value, 1)} ({_ratio(value, dense)})")
            out.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return out


def targets(res: Results) -> list[str]:
    out = ["### Targets (Star n/4, anchor = block)", ""]
    out.append("| length | avg over tasks, % of dense | worst task drop (points) | ≥ 95% | every drop ≤ 10 |")
    out.append("|---|---|---|---|---|")
    for length in res.lengths:
        dense = res.task_average(length, "dense", TASKS)
        star = res.task_average(length, STAR_N4, TASKS)
        drops = [
            (res.mean(t, length, "dense") - res.mean(t, length, STAR_N4), t)
            for t in TASKS
            if res.mean(t, length, STAR_N4) is not None and res.mean(t, length, "dense") is not None
        ]
        worst = max(drops) if drops else (0.0, "–")
        ok_avg = dense is not None and star is not None and (dense == 0 or star >= 0.95 * dense)
        out.append(
            f"| {length} | {_ratio(star, dense)} | {max(0.0, worst[0]):.0f} ({worst[1]}) | "
            f"{'yes' if ok_avg else 'no'} | {'yes' if worst[0] <= 10 else 'no'} |"
        )
    return out


def per_task(res: Results) -> list[str]:
    out = ["### Per task and length", ""]
    head = ["task", "length", "n (haystacks)"] + res.configs + ["n/4 − dense", "n/4 wins/losses"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for task in TASKS:
        for length in res.lengths:
            n = res.n(task, length)
            if n == 0:
                continue
            cells = []
            for config in res.configs:
                value = res.mean(task, length, config)
                if value is None:
                    cells.append("–")
                elif config in ("dense", STAR_N4):
                    lo, hi = wilson(value / 100, res.n(task, length, config))
                    cells.append(f"{value:.0f} [{lo:.0f}–{hi:.0f}]")
                else:
                    cells.append(f"{value:.0f}")
            dense, star = res.mean(task, length, "dense"), res.mean(task, length, STAR_N4)
            diff = "–" if star is None or dense is None else f"{star - dense:+.0f}"
            wins, losses = res.wins_losses(task, length, STAR_N4)
            row = [
                task,
                str(length),
                f"{n} ({res.haystacks(task, length)})",
                *cells,
                diff,
                f"{wins}/{losses}",
            ]
            out.append("| " + " | ".join(row) + " |")
    return out


def by_depth(res: Results) -> list[str]:
    """Main tasks pooled over lengths, by where the needle sits: the quarter of the context, i.e.
    the block it falls in with n/4 blocks (block 0 is encoded exactly as in dense attention)."""
    buckets: dict[tuple[int, str], list[float]] = defaultdict(list)
    for r in res.records:
        if r["task"] in MAIN_TASKS and r["depths"]:
            buckets[(min(3, int(r["depths"][0] * 4)), r["config"])].append(r["score"])
    out = ["### Main tasks by needle position (quarter of the context), all lengths pooled", ""]
    out.append("| quarter | n | " + " | ".join(res.configs) + " |")
    out.append("|---|---|" + "---|" * len(res.configs))
    for q in range(4):
        n = len(buckets[(q, "dense")])
        cells = [_fmt(100 * sum(v) / len(v)) if (v := buckets[(q, c)]) else "–" for c in res.configs]
        out.append(f"| {q + 1} ({25 * q}–{25 * q + 25}%) | {n} | " + " | ".join(cells) + " |")
    return out


def timing(res: Results) -> list[str]:
    seconds: dict[tuple[int, str], dict[tuple, float]] = defaultdict(dict)
    for r in res.records:
        if r["task"] in MAIN_TASKS:
            seconds[(r["target_tokens"], r["config"])][(r["suite"], r["sample"])] = r["encode_s"]
    out = ["### Phase-1 (context encoding) seconds, mean per main-suite sample (shared CPU: noisy)", ""]
    out.append("| length | " + " | ".join(res.configs) + " |")
    out.append("|---|" + "---|" * len(res.configs))
    for length in res.lengths:
        cells = []
        for c in res.configs:
            v = list(seconds[(length, c)].values())
            cells.append(f"{sum(v) / len(v):.1f}" if v else "–")
        out.append(f"| {length} | " + " | ".join(cells) + " |")
    return out


def header(res: Results) -> list[str]:
    m = res.meta
    answered = len({(r["suite"], r["sample"], r["target_tokens"]) for r in res.records})
    return [
        f"- command: `{m['command']}`",
        f"- {m['status']}; {m['elapsed_s'] / 60:.0f} min wall; {answered} haystacks",
        f"- seed {m['seed']}; model {m['model']} ({m['device']}); torch {m['torch']}, transformers "
        f"{m['transformers']}, Python {m['python']}",
        f"- machine: {m['cpu']}, {m['cpu_count']} cores shared with other jobs; torch threads "
        f"{m['torch_threads']}",
        f"- started {m['started']}, finished {m.get('finished', '(still running)')}",
    ]


def render(res: Results) -> str:
    parts = [header(res), summary(res), targets(res), per_task(res), by_depth(res), timing(res)]
    return "\n\n".join("\n".join(p) for p in parts)


def plot(res: Results, path: Path) -> None:
    groups = [f"{length} TOKENS" for length in res.lengths]
    canvas = Canvas(960, 760)
    main = [[res.task_average(length, c, MAIN_TASKS) for c in res.configs] for length in res.lengths]
    y = bar_panel(
        canvas,
        10,
        f"MAIN TASKS ({len(MAIN_TASKS)}), ACCURACY %",
        groups,
        [c.upper() for c in res.configs],
        main,
    )
    both = ["dense", STAR_N4]
    every = [[res.task_average(length, c, TASKS) for c in both] for length in res.lengths]
    bar_panel(canvas, y + 10, f"ALL {len(TASKS)} TASKS, ACCURACY %", groups, [c.upper() for c in both], every)
    write_png(path, canvas)


def write_between_markers(path: Path, body: str, title: str) -> None:
    """Replace the text between the results markers of ``path`` (a new page if there is none)."""
    block = f"{START}\n{body}\n{END}"
    text = path.read_text() if path.is_file() else f"# {title}\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(head + block + tail)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("json", type=Path)
    parser.add_argument("--md", type=Path, default=Path("docs/accuracy.md"))
    parser.add_argument("--png", type=Path, default=Path("docs/accuracy.png"))
    parser.add_argument("--delta-md", type=Path, default=None, help="the delta correction's tables")
    parser.add_argument("--delta-png", type=Path, default=None)
    parser.add_argument("--speed", type=Path, default=None, help="bench/speed.py JSON (--delta-md)")
    parser.add_argument("--probe", type=Path, default=None, help="bench.delta_probe JSON (--delta-md)")
    args = parser.parse_args(argv)
    res = Results(json.loads(args.json.read_text()))
    write_between_markers(args.md, render(res), "Accuracy")
    plot(res, args.png)
    print(f"wrote {args.md} and {args.png}")
    if args.delta_md or args.delta_png:
        from bench import delta_report

        speed, probe = (
            json.loads(p.read_text()) if p and p.is_file() else None for p in (args.speed, args.probe)
        )
        if args.delta_md:
            body = delta_report.render(res, speed, probe)
            write_between_markers(args.delta_md, body, "The delta correction of Star's phase 1")
            print(f"wrote {args.delta_md}")
        if args.delta_png:
            delta_report.plot(res, args.delta_png)
            print(f"wrote {args.delta_png}")


if __name__ == "__main__":
    main()
