"""Turning upstream answer text into what the client asked for.

One :class:`AnswerShaper` per upstream attempt. It runs the answer through the
response filters, enforces ``stop`` and ``max_tokens`` (the upstream honours
neither), hides or shows reasoning, and counts what it emitted for ``usage``.
"""

from __future__ import annotations

import math

import attrs

from grok2api.filters import FilterChain

__all__ = ["AnswerShaper", "Delta", "estimate_tokens"]

#: Characters per token for estimates; the upstream reports no usage, and the
#: common rule of thumb for English text is about four.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


@attrs.frozen
class Delta:
    content: str = ""
    reasoning: str = ""

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning)


@attrs.define
class AnswerShaper:
    """Shapes one answer. ``finish_reason`` is set once the answer must end
    (``"stop"`` for a stop string, ``"length"`` for ``max_tokens``); the
    caller then stops reading the upstream."""

    filters: FilterChain
    show_reasoning: bool
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    content_chars: int = 0
    reasoning_chars: int = 0
    finish_reason: str | None = None
    _held: str = ""

    async def reasoning(self, text: str) -> Delta:
        if self.finish_reason or not text:
            return Delta()
        # Hidden reasoning was still generated: it counts in usage.
        self.reasoning_chars += len(text)
        return Delta(reasoning=text) if self.show_reasoning else Delta()

    async def content(self, text: str) -> Delta:
        if self.finish_reason:
            return Delta()
        return self._limit(await self.filters.feed(text), final=False)

    async def media(self, text: str) -> Delta:
        """Answer text the gateway made: an image link or a notice about one.

        It passes the filters, so text they hold back stays before it, but
        neither the stop strings nor ``max_tokens`` cut it (half a link helps
        nobody), and it does not count as generated text.
        """
        if self.finish_reason or not text:
            return Delta()
        held, self._held = self._held, ""
        self.content_chars += len(held)
        return Delta(content=held + await self.filters.feed(text))

    async def finish(self) -> Delta:
        """The upstream finished: release held text and settle the reason."""
        delta = Delta()
        if not self.finish_reason:
            delta = self._limit(await self.filters.finish(), final=True)
        self.finish_reason = self.finish_reason or "stop"
        return delta

    def _limit(self, text: str, *, final: bool) -> Delta:
        text = self._held + text
        self._held = ""
        if self.stop:
            cut = min((i for s in self.stop if (i := text.find(s)) != -1), default=-1)
            if cut != -1:
                self.finish_reason = "stop"
                return self._emit(text[:cut])
            if not final:
                # A stop string may be split across deltas: hold back the
                # longest tail that could still become one.
                keep = _longest_partial_stop(text, self.stop)
                text, self._held = text[: len(text) - keep], text[len(text) - keep :]
        if self.max_tokens is not None:
            room = self.max_tokens * CHARS_PER_TOKEN - self.content_chars
            if len(text) >= room:
                self.finish_reason = "length"
                self._held = ""
                return self._emit(text[: max(room, 0)])
        return self._emit(text)

    def _emit(self, text: str) -> Delta:
        self.content_chars += len(text)
        return Delta(content=text)

    def usage(self, prompt: str) -> dict[str, object]:
        completion = math.ceil(self.content_chars / CHARS_PER_TOKEN)
        reasoning = math.ceil(self.reasoning_chars / CHARS_PER_TOKEN)
        prompt_tokens = estimate_tokens(prompt)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion + reasoning,
            "total_tokens": prompt_tokens + completion + reasoning,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }


def _longest_partial_stop(text: str, stops: tuple[str, ...]) -> int:
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest
