"""Check the dataset against the documents as starcli reads them, with no model weights: every
question's evidence is in the ingested context and matched by one of its accepted patterns, and
the question does not give its answer away (so a PDF that extracts differently, or a pattern that
cannot match the document's own words, shows up here and not as a mysterious "wrong" in the
results)."""

from __future__ import annotations

from pathlib import Path

from bench.quality import scoring
from bench.quality.dataset import inside, load, materialize


def check_all(work: Path) -> int:
    from starcli import ingest
    from starcli.launch import load_tokenizer
    from starcli.prompt import build

    documents, items = load()
    materialize(documents, work)
    tokenizer = load_tokenizer(None)
    problems = 0
    for item in items:
        with inside(work):
            ingested = ingest.ingest(list(item.sources))
        text = ingest.render_documents(ingested.documents)
        tokens = len(build(tokenizer, text, item.question or "x").context_ids)
        notes = []
        if ingested.skipped:
            notes.append(f"skipped {[str(s.path) for s in ingested.skipped]}")
        if item.command == "ask":
            if scoring.normalize(item.evidence).lower() not in scoring.normalize(text).lower():
                notes.append("evidence not in the context")
            if not scoring.accepted(item.evidence, item.accept):
                notes.append("no accepted pattern matches the evidence")
            if scoring.accepted(item.question, item.accept):
                notes.append("the question itself matches an accepted pattern")
        elif not item.require:
            notes.append("a summary needs require groups")
        problems += bool(notes)
        print(f"{'PROBLEM' if notes else 'ok':8} {item.id:32} {tokens:6,} tokens  {'; '.join(notes)}")
    print(f"{len(items)} items, {problems} with problems")
    return 1 if problems else 0
