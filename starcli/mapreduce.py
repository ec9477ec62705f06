"""Map-reduce over window-sized parts: the answer for inputs too long for window-local positions.

Past 2x the model's window, one encoding of the whole input no longer answers reliably with the
default model (docs/long-inputs.md), so starcli asks each window-sized *part* of the documents on
its own (the map: every part answers from what it holds, or says ``NOT FOUND``), then asks once
more over the parts' findings (the reduce). A part's answer counts as a finding only when it
says something and what it says is in the part (``grounded``: its numbers occur there); of
several findings, the one whose part backs it best stands (``evidence_score``: the question's
words around the answer's value), and only findings that tie go to the final pass; with none,
the output says so. Each part fits the window,
so every pass is the model at positions it was trained on; nothing of the input is dropped, and
the output says that this ran and which parts answered. A summary maps to part summaries and reduces to one.

Parts are cut at line ends where one falls in a part's last fifth, and a part that starts inside
a file repeats that file's header line, so the model still knows where it is reading.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine.events import Event, Failure, Stats
from starcli.prompt import Prompt, build

NOT_FOUND = "NOT FOUND"
MAP_ASK = (
    "Answer the question using only this part of the documents above. If this part does not "
    f"contain the answer, reply with exactly: {NOT_FOUND}\n\nQuestion: {{question}}"
)
MAP_SUMMARIZE = (
    "Summarize this part of the documents above in a few sentences, keeping key names and numbers exact."
)
REDUCE_ASK = (
    "Above are the answers found in different parts of one long input, each after its part's "
    "number. Using them, answer the question.\n\nQuestion: {question}"
)
REDUCE_SUMMARIZE = (
    "Above are summaries of consecutive parts of one long input. Combine them into one summary: "
    "what it is, then its main points, keeping key names and numbers exact."
)
MAP_ANSWER_TOKENS = {"ask": 96, "summarize": 160}
# Past this many parts a run is refused up front: each part is a window-sized pass (about half a
# minute for the default model on 2 CPU cores), so 512 parts (4M tokens at 8K) is hours already.
MAX_PARTS = 512  # each part's answer: a finding, not an essay
PART_MARGIN = 32  # tokens kept free: a part re-tokenizes a few tokens longer at its cut edges
_HEADER = re.compile(r"^===== (.+) =====$", re.MULTILINE)  # starcli.ingest.render_documents' header


@dataclass(frozen=True)
class Part:
    """One window-sized piece of the documents: its text and where it sits in the whole."""

    index: int
    text: str
    first_token: int
    last_token: int  # exclusive


@dataclass(frozen=True)
class Finding:
    part: int
    answer: str
    tokens: tuple[int, int]


@dataclass
class MapReduceResult:
    """What ran: the parts, what each answered, and the answer's ``Stats``: the final pass's, or the
    one finding's part's, or ``None`` when no part found anything (``answer`` then says so)."""

    parts: list[Part]
    findings: list[Finding]
    answers: list[str]  # every part's answer, in order
    answer: str
    stats: Stats | None
    final_pass: bool  # False: no reduce pass ran (nothing found, or one part's answer is the answer)

    def to_json(self) -> dict:
        return {
            "context_tokens": self.parts[-1].last_token if self.parts else 0,  # the whole input's
            "parts": len(self.parts),
            "final_pass": self.final_pass,
            "findings": [
                {"part": f.part + 1, "tokens": list(f.tokens), "answer": f.answer} for f in self.findings
            ],
        }


def split_parts(tokenizer, documents_text: str, budget: int) -> list[Part]:
    """Cut ``documents_text`` into parts of at most ``budget`` tokens (by the model's own
    tokenizer), preferring line ends; a part that begins inside a file starts with its header."""
    if budget < 64:
        raise ValueError(f"a part needs room for at least 64 tokens (got {budget})")
    encoded = tokenizer(documents_text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _ in encoded["offset_mapping"]]
    n = len(starts)
    parts: list[Part] = []
    first = 0
    while first < n:
        header = _header_before(documents_text, starts[first]) if first else None
        line = f"===== {header} (continued) =====\n" if header else None
        room = budget - _count(tokenizer, line)
        last = min(n, first + max(room, budget // 2))
        if last < n:
            cut = documents_text.rfind("\n", starts[first + (last - first) * 4 // 5], starts[last])
            if cut > 0:
                last = max(first + 1, bisect.bisect_right(starts, cut))
        begin = starts[first]
        end = starts[last] if last < n else len(documents_text)
        text = documents_text[begin:end]
        if line and not text.startswith("===== "):
            text = line + text
        parts.append(Part(len(parts), text, first, last))
        first = last
    return parts


def _header_before(text: str, offset: int) -> str | None:
    """The path of the last file header before ``offset`` (``None`` outside any file)."""
    found = None
    for match in _HEADER.finditer(text, 0, offset):
        found = match
    return found.group(1) if found else None


def _count(tokenizer, text: str | None) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


def part_budget(tokenizer, window: int, instructions: str, answer_tokens: int, system: str | None) -> int:
    """Document tokens one part may hold: the window less the template, the instructions and
    the part's answer."""
    empty = build(tokenizer, "", instructions, system)
    return window - len(empty.context_ids) - len(empty.query_ids) - answer_tokens - PART_MARGIN


def estimated_parts(context_tokens: int, query_tokens: int, window: int, command: str = "ask") -> int:
    """About how many parts ``split_parts`` will cut (``--dry-run``, before any tokenizer loads):
    the window less the query, the part's answer and the margin, per part."""
    per_part = max(64, window - query_tokens - MAP_ANSWER_TOKENS[command] - PART_MARGIN)
    return max(1, -(-context_tokens // per_part))


def check_part_count(context_tokens: int, query_tokens: int, window: int, command: str = "ask") -> None:
    """Refuse (``InputError``, exit 2) an input that would need more than ``MAX_PARTS`` parts."""
    from starcli.documents import InputError

    parts = estimated_parts(context_tokens, query_tokens, window, command)
    if parts > MAX_PARTS:
        raise InputError(
            f"the input is about {context_tokens:,} tokens: map-reduce over the model's {window:,}-token "
            f"window would take about {parts:,} passes (at most {MAX_PARTS:,}); narrow the input "
            "(--include/--exclude, fewer sources) or use a model with a longer context (--model)"
        )


def is_not_found(answer: str) -> bool:
    """Whether a part's answer says it found nothing: ``NOT FOUND`` near its start, or nothing."""
    head = answer.strip().upper().replace("*", "")
    return not head or head.startswith(NOT_FOUND) or NOT_FOUND in head[: len(NOT_FOUND) + 16]


_NUMBER = re.compile(r"\d[\d,._]*\d|\d")
_WORD = re.compile(r"[^\W\d_]{4,}")
_YES_NO = re.compile(r"(?i)(yes|no)\b.{0,40}")


def grounded(answer: str, part_text: str, question: str) -> bool:
    """Whether a part's answer is drawn from the part: every number it gives (two digits or
    more, separators ignored) occurs in the part, and, with no such number, at least half of its
    longer words that the question does not contain do. Small models rarely say ``NOT FOUND``;
    they answer from nothing with a number the part does not hold, which this catches."""

    def digits(text: str) -> set[str]:
        return {re.sub(r"[,._]", "", n) for n in _NUMBER.findall(text)}

    numbers = {n for n in digits(answer) - digits(question) if len(n) >= 2}
    if numbers:
        held = {re.sub(r"[,._]", "", n) for n in _NUMBER.findall(part_text)}
        return numbers <= held
    asked = {w.lower() for w in _WORD.findall(question)}
    words = {w.lower() for w in _WORD.findall(answer)} - asked
    if not words:  # nothing to look for: only a plain yes or no stands on its own
        return _YES_NO.fullmatch(answer.strip()) is not None
    text = part_text.lower()
    return sum(w in text for w in words) * 2 >= len(words)


_KEY_WORD = re.compile(r"[^\W_]{3,}")
EVIDENCE_REACH = 240  # characters either side of an answer's value that count as its evidence


def evidence_score(answer: str, part_text: str, question: str) -> float:
    """How strongly the part backs the answer: the largest share of the question's words found
    within ``EVIDENCE_REACH`` characters of a place where the part holds the answer's value (its
    numbers, else its words the question lacks). A value the part only mentions in passing, far
    from what was asked, scores low; the passage the question is about scores high."""
    asked = {w.lower() for w in _KEY_WORD.findall(question)}
    if not asked:
        return 0.0
    numbers = {n for n in _NUMBER.findall(answer) if len(re.sub(r"[,._]", "", n)) >= 2}
    numbers -= set(_NUMBER.findall(question))
    values = numbers or ({w for w in _WORD.findall(answer)} - {w for w in _WORD.findall(question)})
    lower = part_text.lower()
    best = 0.0
    for value in values:
        needle = value.lower()
        start = lower.find(needle)
        while start >= 0:
            around = lower[max(0, start - EVIDENCE_REACH) : start + len(needle) + EVIDENCE_REACH]
            words = {w for w in _KEY_WORD.findall(around)}
            best = max(best, len(asked & words) / len(asked))
            start = lower.find(needle, start + 1)
    return best


def _best_backed(findings: list[Finding], stats: list[Stats], parts: list[Part], question: str):
    """The findings whose part backs them best (``evidence_score``): one when it stands out, else
    the tied ones, for the final pass to weigh. Measured on needle questions (docs/long-inputs.md),
    the final pass of the small default model picked the right one of several findings 22 times
    in 53; the best-backed finding was the right one in every case it stood out."""
    scores = [evidence_score(f.answer, parts[f.part].text, question) for f in findings]
    top = max(scores)
    keep = [i for i, score in enumerate(scores) if score == top]
    return [findings[i] for i in keep], [stats[i] for i in keep]


def findings_text(findings: list[Finding], summarize: bool) -> str:
    word = "Summary of part" if summarize else "Found in part"
    return "\n\n".join(f"{word} {f.part + 1}:\n{f.answer.strip()}" for f in findings)


AnswerFn = Callable[[Prompt, int], Iterator[Event]]  # a prompt and an answer limit -> the engine's events


def map_reduce(
    tokenizer,
    answer: AnswerFn,
    documents_text: str,
    question: str,
    *,
    window: int,
    final_tokens: int,
    summarize: bool = False,
    system: str | None = None,
    answer_prefix: str = "",
    on_part: Callable[[int, int], None] | None = None,
    on_final: Callable[[Event], None] | None = None,
) -> MapReduceResult:
    """Answer ``question`` (the user's own words; ignored when ``summarize``) over ``documents_text``
    by map-reduce. ``answer(prompt, max_tokens)`` runs one prompt through the engine; the final
    pass answers in at most ``final_tokens`` (less where the window leaves less) and its events go
    to ``on_final`` (streaming), each part's start to ``on_part(i, n)``.
    ``answer_prefix`` starts every answer (a benchmark's: RULER puts the answer's first words in
    the query)."""
    command = "summarize" if summarize else "ask"
    map_instructions = MAP_SUMMARIZE if summarize else MAP_ASK.format(question=question.strip())
    budget = part_budget(tokenizer, window, map_instructions, MAP_ANSWER_TOKENS[command], system)
    parts = split_parts(tokenizer, documents_text, budget)
    answers: list[str] = []
    findings: list[Finding] = []
    found_stats: list[Stats] = []
    for part in parts:
        if on_part is not None:
            on_part(part.index, len(parts))
        prompt = _prefixed(tokenizer, build(tokenizer, part.text, map_instructions, system), answer_prefix)
        stats = _drain(answer(prompt, MAP_ANSWER_TOKENS[command]))
        answers.append(stats.answer)
        if summarize or (not is_not_found(stats.answer) and grounded(stats.answer, part.text, question)):
            findings.append(Finding(part.index, stats.answer, (part.first_token, part.last_token)))
            found_stats.append(stats)
    if not findings:
        text = f"{NOT_FOUND}: none of the {len(parts)} parts of the input answered the question."
        return MapReduceResult(parts, findings, answers, text, None, final_pass=False)
    if not summarize:
        findings, found_stats = _best_backed(findings, found_stats, parts, question)
    if len(findings) == 1 and not summarize:  # one part holds the answer: a second pass could only blur it
        return MapReduceResult(parts, findings, answers, findings[0].answer, found_stats[0], final_pass=False)
    reduce_instructions = REDUCE_SUMMARIZE if summarize else REDUCE_ASK.format(question=question.strip())
    prompt = build(tokenizer, findings_text(findings, summarize), reduce_instructions, system)
    prompt = _prefixed(tokenizer, prompt, answer_prefix)
    room = window - len(prompt.context_ids) - len(prompt.query_ids)
    if room < 16:  # findings longer than the window: reduce them again, as parts of their own
        inner = map_reduce(
            tokenizer,
            answer,
            findings_text(findings, summarize),
            question,
            window=window,
            final_tokens=final_tokens,
            summarize=summarize,
            system=system,
            answer_prefix=answer_prefix,
            on_part=on_part,
            on_final=on_final,
        )
        return MapReduceResult(parts, findings, answers, inner.answer, inner.stats, inner.final_pass)
    stats = None
    for event in answer(prompt, min(room, final_tokens)):
        if isinstance(event, Failure):
            raise RuntimeError(f"rank {event.rank} failed during {event.phase}: {event.message}")
        if on_final is not None:
            on_final(event)
        if isinstance(event, Stats):
            stats = event
    if stats is None:
        raise RuntimeError("the engine finished the final pass without an answer")
    return MapReduceResult(parts, findings, answers, stats.answer, stats, final_pass=True)


def _prefixed(tokenizer, prompt: Prompt, answer_prefix: str) -> Prompt:
    if not answer_prefix:
        return prompt
    query_ids = prompt.query_ids + list(tokenizer(answer_prefix, add_special_tokens=False)["input_ids"])
    return dataclasses.replace(prompt, query_text=prompt.query_text + answer_prefix, query_ids=query_ids)


def _drain(events: Iterator[Event]) -> Stats:
    for event in events:
        if isinstance(event, Failure):
            raise RuntimeError(f"rank {event.rank} failed during {event.phase}: {event.message}")
        if isinstance(event, Stats):
            return event
    raise RuntimeError("the engine finished a part without an answer")
