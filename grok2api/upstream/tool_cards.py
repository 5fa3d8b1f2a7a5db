"""Tool-call cards, in both the in-text (2026-02) and the object (later) era.

In the early era the tool call travels inside token text as
``<xai:tool_usage_card>…</xai:tool_usage_card>`` markup, which may be split
over several tokens; :class:`ToolCardSplitter` holds text back until a card
is complete so the markup never leaks into the answer. In the later era a
frame carries a ``toolUsageCard`` object whose one non-id key names the tool.
"""

from __future__ import annotations

import json
import re
from typing import Any

from grok2api.upstream.events import ToolCard

__all__ = ["ToolCardSplitter", "card_from_object"]

_OPEN = "<xai:tool_usage_card>"
_CLOSE = "</xai:tool_usage_card>"
_NAME = re.compile(r"<xai:tool_name>(.*?)</xai:tool_name>", re.DOTALL)
_ARGS = re.compile(
    r"<xai:tool_args>\s*(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?\s*</xai:tool_args>", re.DOTALL
)
_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


def _arguments(raw: str) -> dict[str, Any] | str:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw.strip()
    return value if isinstance(value, dict) else raw.strip()


def _card_from_markup(markup: str, thinking: bool) -> ToolCard:
    name = _NAME.search(markup)
    args = _ARGS.search(markup)
    return ToolCard(
        name=name.group(1).strip() if name else "unknown",
        arguments=_arguments(args.group(1)) if args else {},
        thinking=thinking,
        era="text",
    )


def card_from_object(card: dict[str, Any], thinking: bool) -> ToolCard | None:
    """Read a ``toolUsageCard`` object; ``None`` for an id-only follow-up."""
    for key, value in card.items():
        if key == "toolUsageCardId" or not isinstance(value, dict):
            continue
        args = value.get("args", {})
        return ToolCard(
            name=_CAMEL_BOUNDARY.sub("_", key).lower(),
            arguments=args if isinstance(args, dict) else str(args),
            card_id=card.get("toolUsageCardId"),
            thinking=thinking,
            era="object",
        )
    return None


class ToolCardSplitter:
    """Separates tool-card markup from the text around it, across tokens."""

    def __init__(self) -> None:
        self._held: str | None = None

    @property
    def holding(self) -> bool:
        """True while an opened card has not been closed yet."""
        return self._held is not None

    def split(self, token: str, *, thinking: bool) -> list[str | ToolCard]:
        """Return ``token`` as plain text pieces and completed cards, in order.

        Text after an unclosed ``<xai:tool_usage_card>`` is held back until a
        later token closes it.
        """
        pieces: list[str | ToolCard] = []
        pending = token if self._held is None else self._held + token
        self._held = None
        while pending:
            start = pending.find(_OPEN)
            if start < 0:
                pieces.append(pending)
                break
            if start > 0:
                pieces.append(pending[:start])
                pending = pending[start:]
            end = pending.find(_CLOSE)
            if end < 0:
                self._held = pending
                break
            end += len(_CLOSE)
            pieces.append(_card_from_markup(pending[:end], thinking))
            pending = pending[end:]
        return pieces
