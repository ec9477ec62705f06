"""Split a chat prompt into the context (phase 1, question-independent) and the query (phase 2).

The documents must sit *before* the question in the token stream so that phase 1 can encode
them without knowing it; the question and the chat template's closing tail form the query.
"""

from __future__ import annotations

_SENTINEL = "\u2063STARCLI-DOCUMENTS\u2063"


def build_prompt(tokenizer, documents: str, question: str, system: str | None = None) -> tuple[str, str]:
    """Return ``(context_text, query_text)`` whose concatenation is the full chat prompt."""
    if getattr(tokenizer, "chat_template", None):
        messages = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": f"{_SENTINEL}\n\n{question}"})
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        head, _, tail = rendered.partition(_SENTINEL)
        if tail:
            return head + documents, tail
    prefix = (getattr(tokenizer, "bos_token", None) or "") + (f"{system}\n\n" if system else "")
    return f"{prefix}{documents}", f"\n\nQuestion: {question}\nAnswer:"


_ANSWER = "\u2063STARCLI-ANSWER\u2063"


def follow_up_text(tokenizer, question: str, after_eos: bool, system: str | None = None) -> str:
    """The query text of a follow-up question: what the chat template puts between the end of the
    last answer's text and the next answer (the end of the assistant's turn, the user's turn, the
    assistant's start). ``after_eos``: the last answer ended with the end-of-sequence token, which
    the conversation already holds, so its text is left out here."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": "?"}, {"role": "assistant", "content": _ANSWER}]
        messages.append({"role": "user", "content": question})
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        _, found, tail = rendered.partition(_ANSWER)
        if found:
            eos = getattr(tokenizer, "eos_token", None)
            return tail[len(eos) :] if after_eos and eos and tail.startswith(eos) else tail
    return f"\n\nQuestion: {question}\nAnswer:"


def encode(tokenizer, text: str) -> list[int]:
    """Token ids without extra BOS/EOS: chat templates already carry their special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
