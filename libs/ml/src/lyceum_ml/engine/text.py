"""A continuation's text as its tokens arrive: bytes decoded incrementally (a partial UTF-8 character waits
for its next bytes) and cut before the first stop string; a tail that may yet become one is held back."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence


class TextStream:
    def __init__(self, token_bytes: Callable[[int], bytes], stop: Sequence[str]) -> None:
        self.token_bytes, self.stop = token_bytes, [s for s in stop if s]
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.stopped = False

    def add(self, token_id: int) -> None:
        start = max(0, len(self.text) - max((len(s) for s in self.stop), default=0))
        self.text += self.decoder.decode(self.token_bytes(token_id))
        hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text, self.stopped = self.text[: min(hits)], True

    def visible(self) -> str:
        """The text less its longest tail that begins some stop string (it may yet complete one)."""
        if self.stopped:
            return self.text
        hold = max((n for s in self.stop for n in range(1, len(s)) if self.text.endswith(s[:n])), default=0)
        return self.text[: len(self.text) - hold]

    def fork(self) -> TextStream:
        twin = TextStream(self.token_bytes, self.stop)
        twin.text, twin.stopped = self.text, self.stopped
        twin.decoder.setstate(self.decoder.getstate())
        return twin

    def final(self) -> str:
        return self.text if self.stopped else self.text + self.decoder.decode(b"", final=True)
