"""Markdown tables from a results JSON: totals per system, verdicts per item, and the claim check
(no starcli answer may rank below plain ``generate``'s on the same prompt)."""

from __future__ import annotations

from collections import defaultdict

from bench.quality.scoring import LOOPED, RIGHT, VERDICTS, WRONG

MARK = {RIGHT: "right", WRONG: "wrong", LOOPED: "**looped**"}


def totals(report: dict) -> dict[str, dict]:
    """Per system: the count of each verdict, loops holding the answer, seconds, items run."""
    out: dict[str, dict] = {}
    for name in report["systems"]:
        rows = [r for r in report["results"] if r["system"] == name]
        counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
        out[name] = {
            **counts,
            "looped_with_answer": sum(r["looped"] and r["matched"] for r in rows),
            "seconds": round(sum(r["seconds"] for r in rows), 1),
            "items": len(rows),
        }
    return out


RANK = {RIGHT: 2, WRONG: 1, LOOPED: 0}  # a loop is worse than a short wrong answer: it costs the limit


def worse_than_generate(report: dict) -> list[tuple[str, str, str, str, str]]:
    """``(item, starcli system, its verdict, generate system, its verdict)`` wherever a starcli
    answer ranks below plain ``generate``'s on the same prompt (right > wrong > looped)."""
    kinds = {name: spec["kind"] for name, spec in report["systems"].items()}
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    for r in report["results"]:
        by_item[r["item"]][r["system"]] = r["verdict"]
    worse = []
    for item, verdicts in by_item.items():
        for ours, verdict in verdicts.items():
            if kinds[ours] != "starcli":
                continue
            worse += [
                (item, ours, verdict, theirs, other)
                for theirs, other in verdicts.items()
                if kinds[theirs] == "generate" and RANK[other] > RANK[verdict]
            ]
    return worse


def merged(reports: list[dict]) -> dict:
    """Several runs over the same items as one report (a defaults run and a run of variants)."""
    first = reports[0]
    ids = [item["id"] for item in first["items"]]
    out = {**first, "systems": dict(first["systems"]), "results": list(first["results"])}
    for report in reports[1:]:
        if [item["id"] for item in report["items"]] != ids:
            raise ValueError("runs over different items cannot be merged")
        clash = set(report["systems"]) & set(out["systems"])
        if clash:
            raise ValueError(f"system names in more than one run: {sorted(clash)}")
        out["systems"].update(report["systems"])
        out["results"] += report["results"]
    return out


def markdown(report: dict) -> str:
    names = list(report["systems"])
    lines = [
        "| system | right | wrong | looped | looped, answer inside | time (s) | s / item |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, t in totals(report).items():
        per_item = t["seconds"] / t["items"] if t["items"] else 0.0
        lines.append(
            f"| {name} | {t[RIGHT]} | {t[WRONG]} | {t[LOOPED]} | {t['looped_with_answer']} "
            f"| {t['seconds']:.0f} | {per_item:.1f} |"
        )
    star = [n for n, spec in report["systems"].items() if spec.get("attention") == "star"]
    lines += ["", f"| item | context tokens | blocks ({', '.join(star)}) | " + " | ".join(names) + " |"]
    lines.append("| --- | ---: | ---: | " + " | ".join("---" for _ in names) + " |")
    results = {(r["item"], r["system"]): r for r in report["results"]}
    for item in report["items"]:
        found = [results.get((item["id"], name), {}).get("blocks") for name in star]
        blocks = ", ".join(str(b) for b in found if b is not None)
        cells = []
        for name in names:
            r = results.get((item["id"], name))
            cells.append(f"{MARK[r['verdict']]} ({r['generated_tokens']})" if r else "")
        lines.append(f"| {item['id']} | {item['context_tokens']:,} | {blocks} | " + " | ".join(cells) + " |")
    worse = worse_than_generate(report)
    lines.append("")
    if not any(spec["kind"] == "generate" for spec in report["systems"].values()):
        lines.append("(No plain `generate` system in this run to compare with.)")
    elif worse:
        lines.append("Where a starcli answer ranks below plain `generate`'s (right > wrong > looped):")
        lines += [
            f"- {item}: {ours} {verdict}, {theirs} {other}" for item, ours, verdict, theirs, other in worse
        ]
    else:
        lines.append(
            "No item where a starcli answer ranks below plain `generate`'s (right > wrong > looped)."
        )
    return "\n".join(lines) + "\n"
