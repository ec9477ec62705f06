"""A grouped bar chart written as a PNG with nothing but ``zlib`` and ``struct``.

matplotlib is not a dependency of starcli; the accuracy report needs one simple chart, so it is
drawn here on an RGB canvas with a 3x5 pixel font (upper case, digits, a few signs).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

# Rows top to bottom; bit 4 = left pixel, 2 = middle, 1 = right.
_FONT = {
    "0": "75557",
    "1": "26227",
    "2": "71747",
    "3": "71317",
    "4": "55711",
    "5": "74717",
    "6": "74757",
    "7": "71111",
    "8": "75757",
    "9": "75717",
    "A": "25755",
    "B": "65656",
    "C": "34443",
    "D": "65556",
    "E": "74647",
    "F": "74644",
    "G": "34553",
    "H": "55755",
    "I": "72227",
    "J": "11152",
    "K": "55655",
    "L": "44447",
    "M": "57755",
    "N": "65555",
    "O": "25552",
    "P": "65644",
    "Q": "25563",
    "R": "65655",
    "S": "34216",
    "T": "72222",
    "U": "55557",
    "V": "55552",
    "W": "55775",
    "X": "55255",
    "Y": "55222",
    "Z": "71247",
    " ": "00000",
    "%": "51245",
    "/": "11244",
    "=": "07070",
    ".": "00002",
    "-": "00700",
    "(": "12221",
    ")": "42224",
    ":": "02020",
    ",": "00024",
}
PALETTE = [
    (90, 90, 90),
    (31, 119, 180),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (214, 39, 40),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
]


class Canvas:
    def __init__(self, width: int, height: int, background=(255, 255, 255)):
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def text(self, x: int, y: int, text: str, color=(0, 0, 0), scale: int = 2) -> int:
        """Draw ``text`` with its top-left corner at (x, y); return the x after it."""
        for ch in text.upper():
            glyph = _FONT.get(ch, _FONT[" "])
            for r, bits in enumerate(glyph):
                for c in range(3):
                    if int(bits) & (4 >> c):
                        self.rect(
                            x + c * scale, y + r * scale, x + (c + 1) * scale, y + (r + 1) * scale, color
                        )
            x += 4 * scale
        return x

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * self.width * 3 : (y + 1) * self.width * 3])
            for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def text_width(text: str, scale: int = 2) -> int:
    return 4 * scale * len(text)


def bar_panel(
    canvas: Canvas,
    top: int,
    title: str,
    groups: list[str],
    series: list[str],
    values,
    height=260,
    intervals=None,
    peak: float | None = None,
    digits: int = 0,
):
    """Bars of ``values[g][s]`` (0..100 or None) for each group and series, with a legend that
    wraps; ``intervals[g][s]``: an optional (low, high) whisker on each bar. ``peak``: the bars are
    of any unit, scaled to this value (no 0-100 grid); ``digits``: decimals of the bar labels."""
    left, plot_w = 70, canvas.width - 90
    base = top + 30 + height
    canvas.text(left, top, title)
    top_value = 100.0 if peak is None else (peak or 1.0)
    for tick in range(0, 101, 25) if peak is None else ():
        y = base - tick * height // 100
        canvas.rect(left, y, left + plot_w, y + 1, (225, 225, 225))
        canvas.text(left - text_width(str(tick)) - 8, y - 5, str(tick))
    group_w = plot_w // len(groups)
    bar_w = max(6, (group_w - 30) // len(series))
    for g, name in enumerate(groups):
        x = left + g * group_w + 15
        for s in range(len(series)):
            value = values[g][s]
            if value is not None:
                y = base - round(value * height / top_value)
                canvas.rect(x, y, x + bar_w - 3, base, PALETTE[s % len(PALETTE)])
                label = f"{value:.{digits}f}"
                span = intervals[g][s] if intervals is not None else None
                if span is not None:  # a whisker in the middle of the bar
                    lo, hi = (base - round(v * height / top_value) for v in span)
                    mid = x + (bar_w - 3) // 2
                    canvas.rect(mid - 1, hi, mid + 1, lo + 1, (0, 0, 0))
                    canvas.rect(mid - 3, hi, mid + 4, hi + 1, (0, 0, 0))
                    canvas.rect(mid - 3, lo, mid + 4, lo + 1, (0, 0, 0))
                    y = min(y, hi)
                scale = 2 if text_width(label) <= bar_w else 1
                canvas.text(
                    x + (bar_w - 3 - text_width(label, scale)) // 2, y - 7 * scale, label, scale=scale
                )
            x += bar_w
        canvas.text(left + g * group_w + (group_w - text_width(name)) // 2, base + 8, name)
    canvas.rect(left, base, left + plot_w, base + 2, (0, 0, 0))
    x, y = left, base + 32
    for s, name in enumerate(series):
        if x > left and x + 18 + text_width(name) > left + plot_w:
            x, y = left, y + 20
        canvas.rect(x, y, x + 12, y + 12, PALETTE[s % len(PALETTE)])
        x = canvas.text(x + 18, y + 1, name) + 24
    return y + 28


def write_png(path: Path, canvas: Canvas) -> None:
    path.write_bytes(canvas.png())
