"""RULER-style tasks, grouped into *suites* that share one haystack.

Phase 1 (the context encoding) is most of the cost of a sample on CPU and does not depend on the
question, so a suite puts the needles of a few questions into one haystack and asks them all over
one encoding; the other questions' needles then act as distractors (RULER's multi-key setting).
Kept to a few needles per haystack: the default 135M model loses track with more.

- ``single``: RULER's niah_single_2 unchanged: one number needle in essay filler.
- ``noise``: RULER's "The grass is green..." haystack, three number needles
  (``niah_noise_number``; RULER's niah_single_1, here with two distractor keys).
- ``essay``: essay-like filler, one needle each with a number, a word and a UUID as the value
  (``niah_essay_number`` / ``_word`` / ``_uuid``; RULER's niah_single_2 / _3 with distractors).
- ``vt``: variable tracking, one chain of four hops in the noise haystack (RULER's vt).
- ``multi``: essay filler, one key with four values (``niah_multivalue``) and four keys asked
  together (``niah_multiquery``).
- ``needles``: a haystack made only of needles (``niah_multikey_2`` with number values,
  ``niah_multikey_3`` with UUID keys and values).
- ``cwe``: a numbered word list; the ten words that appear 30 times among words that appear 3 times.
- ``fwe``: "coded" words drawn with Zipf frequencies (alpha 2); the three most frequent.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.ruler.haystack import (
    Needle,
    compose,
    essay_units,
    fit,
    noise_units,
    random_key,
    random_number,
    random_uuid,
    random_var,
    stratified_depths,
    unique,
)
from bench.ruler.words import ALL_WORDS, NOUN_LIST
from engine.chat import build_prompt, encode

SUITES = ("noise", "essay", "vt", "multi", "needles", "cwe", "fwe", "single")
TASKS = (
    "niah_single_2",
    "niah_noise_number",
    "vt",
    "niah_essay_number",
    "niah_essay_word",
    "niah_essay_uuid",
    "niah_multivalue",
    "niah_multiquery",
    "niah_multikey_2",
    "niah_multikey_3",
    "cwe",
    "fwe",
)
_NIAH_PREAMBLE = (
    "Some special magic {what} are hidden within the following text. Make sure to memorize them. "
    "I will quiz you about them afterwards.\n\n"
)
_STOP = (".", "\n")


@dataclass
class Question:
    task: str
    question: str
    answer_prefix: str
    references: list[str]
    max_tokens: int
    stop: tuple[str, ...] = _STOP
    needles: list[str] = field(default_factory=list)  # texts whose position is the question's depth
    depths: list[float] = field(default_factory=list)  # filled in: token position / context tokens
    wanted_depths: list[float] = field(default_factory=list)  # filled in: where the needles were put


@dataclass
class Sample:
    suite: str
    target_tokens: int
    seed: int
    index: int
    documents: str
    questions: list[Question]
    context_ids: list[int]
    query_ids: list[list[int]]

    @property
    def prompt_tokens(self) -> int:
        """The longest full prompt (context + query) of this sample, in tokens."""
        return len(self.context_ids) + max(len(q) for q in self.query_ids)


@dataclass
class Recipe:
    """How to build a suite: ``documents(k)`` grows with ``k``; ``k`` is searched to fit the budget."""

    documents: Callable[[int], str]
    questions: list[Question]
    k_max: int
    needles: list[Needle] = field(default_factory=list)


def _niah_question(task: str, what: str, key: str, refs: list[str], needles: list[str], max_tokens: int):
    plural = len(refs) > 1
    ask = "What are all the" if plural else "What is the"
    verb = "are" if plural else "is"
    return Question(
        task=task,
        question=f"{ask} special magic {what} for {key} mentioned in the provided text?",
        answer_prefix=f"The special magic {what} for {key} mentioned in the provided text {verb}",
        references=refs,
        max_tokens=max_tokens,
        needles=needles,
    )


def _needle(kind: str, key: str, value: str) -> str:
    return f"One of the special magic {kind} for {key} is: {value}."


def _haystack_recipe(preamble: str, units: list[str], needles: list[Needle], questions) -> Recipe:
    return Recipe(lambda k: preamble + compose(units[:k], needles), questions, len(units), needles)


def _number_needles(task: str, kind: str, draw, count: int, depths, rng, taken, max_tokens: int):
    """``count`` single-value needles with fresh keys, one question each."""
    needles, questions = [], []
    for _ in range(count):
        key, value = unique(random_key, rng, taken), unique(draw, rng, taken)
        text = _needle(kind, key, value)
        needles.append(Needle(text, next(depths)))
        questions.append(_niah_question(task, kind[:-1], key, [value], [text], max_tokens))
    return needles, questions


def noise_suite(rng: random.Random, budget: int) -> Recipe:
    taken: set[str] = set()
    depths = iter(stratified_depths(3, rng))
    needles, questions = _number_needles(
        "niah_noise_number", "numbers", random_number, 3, depths, rng, taken, 12
    )
    return _haystack_recipe(
        _NIAH_PREAMBLE.format(what="numbers"), noise_units(budget, rng), needles, questions
    )


def vt_suite(rng: random.Random, budget: int) -> Recipe:
    """RULER's variable tracking: one chain of four hops in the noise haystack."""
    taken: set[str] = set()
    names = [unique(random_var, rng, taken) for _ in range(5)]
    value = str(rng.randint(10000, 99999))
    texts = [f"VAR {names[0]} = {value}."] + [f"VAR {names[j + 1]} = VAR {names[j]}." for j in range(4)]
    needles = [Needle(t, d) for t, d in zip(texts, sorted(stratified_depths(5, rng)))]
    question = Question(
        task="vt",
        question=f"Find all variables that are assigned the value {value} in the text above.",
        answer_prefix="According to the chain(s) of variable assignment in the text above, "
        f"5 variables are assigned the value {value}, they are:",
        references=names,
        max_tokens=32,
        stop=(),
        needles=texts,
    )
    preamble = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
    return _haystack_recipe(preamble, noise_units(budget, rng), needles, [question])


def single_suite(rng: random.Random, budget: int) -> Recipe:
    """RULER's niah_single_2 as it is: one number needle in essay filler, nothing to confuse it with."""
    depths = iter(stratified_depths(1, rng))
    needles, questions = _number_needles("niah_single_2", "numbers", random_number, 1, depths, rng, set(), 12)
    return _haystack_recipe(
        _NIAH_PREAMBLE.format(what="numbers"), essay_units(budget, rng), needles, questions
    )


def essay_suite(rng: random.Random, budget: int) -> Recipe:
    """One needle each with a number, a word and a UUID as the value."""
    taken: set[str] = set()
    depths = iter(stratified_depths(3, rng))
    needles, questions = [], []
    for task, kind, draw, max_tokens in (
        ("niah_essay_number", "numbers", random_number, 12),
        ("niah_essay_word", "words", lambda r: r.choice(NOUN_LIST), 10),
        ("niah_essay_uuid", "uuids", random_uuid, 44),
    ):
        more_needles, more_questions = _number_needles(task, kind, draw, 1, depths, rng, taken, max_tokens)
        needles += more_needles
        questions += more_questions
    preamble = _NIAH_PREAMBLE.format(what="numbers, words and uuids")
    return _haystack_recipe(preamble, essay_units(budget, rng), needles, questions)


def multi_suite(rng: random.Random, budget: int) -> Recipe:
    """Multi-value (one key, four values) and multi-query (four keys asked at once)."""
    taken: set[str] = set()
    depths = iter(stratified_depths(8, rng))
    key = unique(random_key, rng, taken)
    refs = [unique(random_number, rng, taken) for _ in range(4)]
    texts = [_needle("numbers", key, v) for v in refs]
    needles = [Needle(t, next(depths)) for t in texts]
    questions = [_niah_question("niah_multivalue", "numbers", key, refs, texts, 48)]
    keys = [unique(random_key, rng, taken) for _ in range(4)]
    refs = [unique(random_number, rng, taken) for _ in range(4)]
    texts = [_needle("numbers", k, v) for k, v in zip(keys, refs)]
    needles += [Needle(t, next(depths)) for t in texts]
    joined = ", ".join(keys[:-1]) + f", and {keys[-1]}"
    questions.append(_niah_question("niah_multiquery", "numbers", joined, refs, texts, 48))
    return _haystack_recipe(
        _NIAH_PREAMBLE.format(what="numbers"), essay_units(budget, rng), needles, questions
    )


def needles_suite(rng: random.Random, budget: int) -> Recipe:
    taken: set[str] = set()
    depths = iter(stratified_depths(4, rng))
    needles, questions = [], []
    for task in ["niah_multikey_2"] * 2 + ["niah_multikey_3"] * 2:
        if task == "niah_multikey_2":
            key, value, kind, max_tokens = unique(random_key, rng, taken), random_number(rng), "numbers", 12
        else:
            key, value, kind, max_tokens = unique(random_uuid, rng, taken), random_uuid(rng), "uuids", 44
        text = _needle(kind, key, value)
        needles.append(Needle(text, next(depths)))
        questions.append(_niah_question(task, kind[:-1], key, [value], [text], max_tokens))
    units = []
    for _ in range(budget):
        if rng.random() < 0.5:
            units.append(_needle("numbers", unique(random_key, rng, taken), random_number(rng)))
        else:
            units.append(_needle("uuids", unique(random_uuid, rng, taken), random_uuid(rng)))
    preamble = _NIAH_PREAMBLE.format(what="numbers and uuids")
    return _haystack_recipe(preamble, units, needles, questions)


def cwe_suite(rng: random.Random, budget: int) -> Recipe:
    words = rng.sample(ALL_WORDS, len(ALL_WORDS))
    common, rare = words[:10], words[10:]

    def documents(k: int) -> str:
        listing = [w for w in common for _ in range(30)] + [w for w in rare[:k] for _ in range(3)]
        random.Random(k).shuffle(listing)
        numbered = " ".join(f"{i + 1}. {w}" for i, w in enumerate(listing))
        return (
            "Below is a numbered list of words. In these words, some appear more often than others. "
            f"Memorize the ones that appear most often.\n{numbered}"
        )

    question = Question(
        task="cwe",
        question="What are the 10 most common words in the above list?",
        answer_prefix="The top 10 words that appear most often in the list are:",
        references=common,
        max_tokens=48,
        stop=(),
    )
    return Recipe(documents, [question], len(rare))


def zipf_counts(total: int, ranks: int, alpha: float = 2.0) -> list[int]:
    """RULER's fwe: word of rank k appears ``int(total * k**-alpha / zeta(alpha))`` times."""
    zeta = math.pi**2 / 6 if alpha == 2.0 else sum(k**-alpha for k in range(1, 100_000))
    return [int(total * k**-alpha / zeta) for k in range(1, ranks + 1)]


def fwe_suite(rng: random.Random, budget: int) -> Recipe:
    taken: set[str] = set()
    vocab = [
        unique(lambda r: "".join(r.choices(string.ascii_lowercase, k=6)), rng, taken) for _ in range(2000)
    ]
    vocab[0] = "...."  # RULER: the top-ranked "word" is noise the question says to ignore

    def documents(k: int) -> str:
        words = [w for w, c in zip(vocab, zipf_counts(k, len(vocab))) for _ in range(c)]
        random.Random(k).shuffle(words)
        return (
            "Read the following coded text and track the frequency of each coded word. Find the three "
            f"most frequently appeared coded words. {' '.join(words)}"
        )

    question = Question(
        task="fwe",
        question="Do not provide any explanation. Please ignore the dots '....'. What are the three most "
        "frequently appeared words in the above coded text?",
        answer_prefix="According to the coded text above, the three most frequently appeared words are:",
        references=vocab[1:4],
        max_tokens=20,
        stop=(),
    )
    return Recipe(documents, [question], 3 * budget)


_RECIPES = {
    "single": single_suite,
    "noise": noise_suite,
    "essay": essay_suite,
    "vt": vt_suite,
    "multi": multi_suite,
    "needles": needles_suite,
    "cwe": cwe_suite,
    "fwe": fwe_suite,
}


def make_sample(suite: str, tokenizer, target_tokens: int, seed: int, index: int) -> Sample:
    """Build sample ``index`` of ``suite``: deterministic for ``(seed, suite, target, index)``, with
    the full prompt (context + longest query) at most ``target_tokens`` long."""
    rng = random.Random(f"{seed}/{suite}/{target_tokens}/{index}")
    recipe = _RECIPES[suite](rng, target_tokens // 3)
    context_of = lambda k: build_prompt(tokenizer, recipe.documents(k), "")[0]  # noqa: E731
    queries = [build_prompt(tokenizer, "", q.question)[1] + q.answer_prefix for q in recipe.questions]
    query_ids = [encode(tokenizer, q) for q in queries]
    longest = max(len(q) for q in query_ids)
    k = fit(lambda k: len(encode(tokenizer, context_of(k))) + longest - target_tokens, 1, recipe.k_max)
    documents = recipe.documents(k)
    context = context_of(k)
    context_ids = encode(tokenizer, context)
    wanted = {n.text: n.depth for n in recipe.needles}
    for q in recipe.questions:
        q.wanted_depths = [wanted[t] for t in q.needles]
        q.depths = [len(encode(tokenizer, context[: context.index(t)])) / len(context_ids) for t in q.needles]
    return Sample(suite, target_tokens, seed, index, documents, recipe.questions, context_ids, query_ids)
