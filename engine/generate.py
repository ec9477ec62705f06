"""The generation loop shared by every attention mode: sample, stream text, stop.

Kept as plain functions (gpt-fast's lesson): ``step`` runs the model on one token and returns its
logits; everything mode-specific lives behind it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from engine.comm import Comm
from engine.events import Token
from engine.settings import REPETITION_WINDOW, GenerationSettings

# A loop, either of two kinds (docs/quality.md saw both on real documents):
# - exact: the answer's last tokens repeat with some period p at least LOOP_COPIES times and over
#   at least LOOP_TOKENS tokens (a run of one token must be 32 long, a sentence must come thrice);
# - a template: a sentence repeated with one word changed each time ("The function X is not
#   supported. The function Y is not ...") is never periodic, but some RUN_TOKENS-token run in it
#   comes back; the RUN_COPIES-th time within the answer's last RUN_WINDOW tokens is a loop.
LOOP_COPIES = 3
LOOP_TOKENS = 32
LOOP_LONGEST_PERIOD = 256
RUN_TOKENS = 8
RUN_COPIES = 3
RUN_WINDOW = 256


def repeating_tail(ids: list[int]) -> int | None:
    """The period of the loop ``ids`` ends in, or None: the smallest ``p`` such that the last
    ``max(LOOP_COPIES * p, LOOP_TOKENS)`` tokens repeat with period ``p``, else the distance
    back to the earliest of ``RUN_COPIES`` copies of the last ``RUN_TOKENS`` tokens within the
    last ``RUN_WINDOW``. Cheap enough to run after every token: only candidates whose last token
    matches are compared."""
    n = len(ids)
    if n < RUN_TOKENS * RUN_COPIES:
        return None
    run = ids[-RUN_TOKENS:]
    copies, below = 1, n - RUN_TOKENS  # copies found so far, and where the latest one starts
    for start in range(n - 2 * RUN_TOKENS, max(n - RUN_WINDOW, 0) - 1, -1):
        if start + RUN_TOKENS > below:  # copies must not overlap: "a a a a" is not 3 runs of "a a"
            continue
        if ids[start + RUN_TOKENS - 1] == run[-1] and ids[start : start + RUN_TOKENS] == run:
            copies, below = copies + 1, start
            if copies >= RUN_COPIES:
                return n - RUN_TOKENS - start
    if n < LOOP_TOKENS:
        return None
    last = ids[-1]
    for p in range(1, min(LOOP_LONGEST_PERIOD, n // LOOP_COPIES) + 1):
        span = max(LOOP_COPIES * p, LOOP_TOKENS)
        if span > n:
            break
        if ids[-1 - p] == last and ids[n - span + p :] == ids[n - span : n - p]:
            return p
    return None


class Sampler:
    """Greedy at temperature 0, else temperature + nucleus sampling from a seeded generator; the
    repetition penalty and the no-repeat n-gram rule act on the logits first, given the answer so
    far (``history``)."""

    def __init__(self, settings: GenerationSettings, device: torch.device):
        self.temperature = settings.temperature
        self.top_p = settings.top_p
        self.penalty = settings.repetition_penalty
        self.ngram = settings.no_repeat_ngram
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(settings.seed if settings.seed is not None else torch.seed())
        self._followers: dict[tuple[int, ...], set[int]] = {}  # (n-1)-gram -> tokens seen after it

    def __call__(self, logits: torch.Tensor, history: Sequence[int] = ()) -> int:
        rules = bool(history) and (self.penalty != 1 or self.ngram)
        if self.temperature == 0 and not rules and logits.is_cuda:
            from kernels.argmax import argmax  # the logits as they are: no float32 copy first

            return argmax(logits.reshape(-1))
        logits = logits.float().reshape(-1)
        if rules:
            logits = self._rules(logits, history)
        if self.temperature == 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / self.temperature, dim=-1)
        if self.top_p < 1:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < self.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def _rules(self, logits: torch.Tensor, history: Sequence[int]) -> torch.Tensor:
        """The CTRL repetition penalty (a positive logit divided, a negative one multiplied) over
        the last ``REPETITION_WINDOW`` answer tokens, then the n-gram ban."""
        logits = logits.clone()
        if self.penalty != 1:
            recent = torch.tensor(sorted(set(history[-REPETITION_WINDOW:])), device=logits.device)
            values = logits[recent]
            logits[recent] = torch.where(values > 0, values / self.penalty, values * self.penalty)
        if self.ngram and len(history) >= self.ngram - 1:
            size = self.ngram - 1
            if len(history) >= self.ngram:  # record the n-gram the last token completed
                self._followers.setdefault(tuple(history[-self.ngram : -1]), set()).add(history[-1])
            banned = self._followers.get(tuple(history[-size:]), ())
            if banned:
                logits[torch.tensor(sorted(banned), device=logits.device)] = float("-inf")
        return logits


class TextStream:
    """Incremental detokenisation that never emits half a character or any part of a stop string."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.emitted = 0
        self.text = ""

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add a token; return the new text safe to show and whether a stop string was hit."""
        self.ids.append(token_id)
        self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        hits = [i for i in (self.text.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            return self._flush(len(self.text)), True
        safe = len(self.text)
        if self.text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for more bytes
            safe -= 1
        for s in self.stop:  # hold back a suffix that may grow into a stop string
            for k in range(min(len(s) - 1, safe), 0, -1):
                if self.text[:safe].endswith(s[:k]):
                    safe -= k
                    break
        return self._flush(safe), False

    def finish(self) -> str:
        return self._flush(len(self.text))

    def _flush(self, upto: int) -> str:
        upto = max(upto, self.emitted)
        out = self.text[self.emitted : upto]
        self.emitted = upto
        return out


@dataclass
class DecodeResult:
    text: str
    tokens: int
    stop_reason: str
    ttft_s: float
    decode_s: float
    pending: list[int] = field(default_factory=list)  # sampled but never fed: the last token, or EOS
    fed: int = 0  # answer tokens the model was run on (their KV is in the cache)


def decode_loop(
    first_logits: torch.Tensor,
    step: Callable[[int], torch.Tensor],
    comm: Comm,
    settings: GenerationSettings,
    tokenizer,
    eos_ids: set[int],
    query_index: int,
    started: float,
    sink: list[DecodeResult],
    overlap: bool | None = None,
) -> Iterator[Token]:
    """Yield tokens until EOS, a stop string, a loop (``repeating_tail``) or the token limit;
    append the summary to ``sink``.

    The host samples and broadcasts ``[token, stop flag]`` so every rank runs the same steps; the
    loop check needs only the token ids, so every rank makes it and comes to the same answer.

    On a GPU the next step is launched as soon as its token is known, before the host turns the
    token into text and checks it for a stop string or a loop: the GPU runs the step while the
    host does that work, rather than waiting on it (the default model's tokenizer took 0.02 ms a
    token 100 tokens into an answer and 0.18 ms 1,000 in, on a 2-core VM; docs/benchmarks.md).
    A stop found then leaves that step's logits unused; its token is in the
    cache, so ``pending`` is empty. On the CPU the step runs in the host's own thread, so there
    the step waits for the checks and no step is wasted. ``overlap`` sets the order (by default
    from the logits' device).
    """
    sampler = Sampler(settings, first_logits.device) if comm.is_host else None
    stream = TextStream(tokenizer, settings.stop)
    if overlap is None:
        overlap = first_logits.device.type == "cuda"
    logits = first_logits
    ttft = decode_start = 0.0
    count, fed, reason = 0, 0, "max_tokens"
    limit = settings.max_tokens
    assert limit is not None, "the run plan decides the answer's length"
    answer: list[int] = []
    pending: list[int] = []
    while True:
        token, stop = -1, 0
        if comm.is_host:
            token = sampler(logits, answer)
            if token in eos_ids:
                stop = 1
        token, stop = comm.broadcast_from_host([token, stop])
        if count == 0:
            ttft = time.perf_counter() - started
            decode_start = time.perf_counter()
        if stop == 1:
            pending = [token]
            reason = "eos"
            break
        count += 1
        answer.append(token)
        last = count >= limit
        if overlap and not last:
            logits = step(token)
            fed += 1
        text, hit = stream.push(token)
        if comm.is_host and (text or hit):
            yield Token(query=query_index, token_id=token, text=text)
        if hit:
            reason = "stop"
            break
        if settings.stop_on_repetition and repeating_tail(answer) is not None:
            reason = "repetition"
            break
        if last:
            break
        if not overlap:
            logits = step(token)
            fed += 1
    if reason != "eos":
        pending = answer[fed:]  # the last token, unless a launched step already fed it
    rest = stream.finish()
    if comm.is_host and rest:
        yield Token(query=query_index, token_id=-1, text=rest)
    decode_s = time.perf_counter() - decode_start
    sink.append(DecodeResult(stream.text, count, reason, ttft, decode_s, pending, fed))
