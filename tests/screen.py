"""A small terminal emulator for tests: what a person would see after a byte stream.

Enough of a VT100 for rich's live display: printable characters with the terminal's pending wrap
at the right margin (a character written in the last column leaves the cursor there; the next one
wraps), CR, LF, cursor up (``ESC [ n A``), erase line (``ESC [ 2 K``); other escape sequences and
control characters change nothing on the screen. The screen keeps every line (no scrolling off).
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z@])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def screen_lines(data: bytes, width: int) -> list[str]:
    """The screen's lines, trailing blanks removed, after ``data`` was written to a terminal
    ``width`` columns wide."""
    rows: list[list[str]] = [[]]
    row = col = 0
    pending_wrap = False
    text = data.decode("utf-8", "replace")
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\x1b":
            match = _CSI.match(text, index) or _OSC.match(text, index)
            if match is None:
                index += 1
                continue
            if match.re is _CSI:
                params, final = match.group(1), match.group(2)
                if final == "A":
                    row = max(0, row - int(params or 1))
                    pending_wrap = False
                elif final == "K" and params == "2":
                    while len(rows) <= row:
                        rows.append([])
                    rows[row] = []
            index = match.end()
            continue
        index += 1
        if char == "\r":
            col, pending_wrap = 0, False
        elif char == "\n":
            row += 1
            pending_wrap = False
        elif char >= " " and char != "\x7f":
            if pending_wrap:
                row, col, pending_wrap = row + 1, 0, False
            while len(rows) <= row:
                rows.append([])
            line = rows[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = char
            if col == width - 1:
                pending_wrap = True
            else:
                col += 1
        while len(rows) <= row:
            rows.append([])
    lines = ["".join(line).rstrip() for line in rows]
    while lines and not lines[-1]:
        lines.pop()
    return lines
