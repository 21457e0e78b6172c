"""Character offsets of NOMA source ↔ LSP positions (0-based line, UTF-16 column).

Owns: LineIndex, built once per document version.
Imports: nothing of NOMA's.
"""

from __future__ import annotations

import bisect


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class LineIndex:
    """Where each line of a text starts, to convert offsets and positions both ways."""

    def __init__(self, text: str):
        self.text = text
        self.starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self.starts.append(i + 1)

    def position(self, offset: int) -> tuple[int, int]:
        """(line, character) of an offset, the character counted in UTF-16 code units."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.starts, offset) - 1
        return line, _utf16_len(self.text[self.starts[line]:offset])

    def offset(self, line: int, character: int) -> int:
        """The offset of an LSP position (clamped to the text and to the line's end)."""
        if line < 0:
            return 0
        if line >= len(self.starts):
            return len(self.text)
        start = self.starts[line]
        end = self.starts[line + 1] - 1 if line + 1 < len(self.starts) else len(self.text)
        units = 0
        for i in range(start, end):
            if units >= character:
                return i
            units += 2 if ord(self.text[i]) > 0xFFFF else 1
        return end
