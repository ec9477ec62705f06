"""Text that comes from the input, made safe to show on a terminal.

A file name, a PDF's metadata, a reason quoting a pattern or an error quoting a path can hold
control characters: ESC sequences that recolour, retitle or rewrite the terminal, a newline that
splits a plan line in two, bidirectional overrides that reorder what is shown. Everything
starcli prints to a person goes through ``printable`` once, at the print site, which escapes
them as ``ls -b`` does (``\\n``, ``\\033``, a file name's undecodable bytes as ``\\351``).
``--json`` keeps the exact strings (``json_safe`` only writes the C1 and bidi characters that
JSON leaves raw as ``\\u`` escapes, so the output parses to the same strings), and the answer
keeps its newlines and tabs (``answer_for_terminal``).
"""

from __future__ import annotations

import re

_NAMED = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}
# C0 and C1 controls, DEL, bidirectional marks and overrides, and lone surrogates (the
# undecodable bytes of a file name, as Python's surrogateescape holds them).
_CONTROLS = "\x00-\x1f\x7f-\x9f"
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[{_CONTROLS}{_BIDI}\\\\\ud800-\udfff]")
_UNSAFE_IN_ANSWER = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline
_RAW_IN_JSON = re.compile(f"[\x7f-\x9f{_BIDI}\ud800-\udfff]")  # what json.dumps leaves unescaped


def printable(text: str) -> str:
    """``text`` with every control character, bidi control and backslash escaped (``ls -b``)."""
    return _UNSAFE.sub(_escape, str(text))


def answer_for_terminal(text: str) -> str:
    """The model's answer for a terminal: controls other than newline and tab escaped, so an
    answer that copies an ESC sequence out of a document cannot drive the terminal."""
    return _UNSAFE_IN_ANSWER.sub(_escape, text)


def json_safe(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with DEL, C1, bidi characters and
    lone surrogates as ``\\uXXXX``: the same strings once parsed, nothing raw on a terminal, and
    valid UTF-8 even for a file name that is not."""
    return _RAW_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name: the byte itself
        return f"\\{code - 0xDC00:03o}"
    data = char.encode("utf-8", "surrogatepass")
    return "".join(f"\\{byte:03o}" for byte in data)
