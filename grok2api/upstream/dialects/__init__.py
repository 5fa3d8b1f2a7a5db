"""Protocol dialects: one module per version of the chat request body.

Grok's web app changed its chat body in 2026 (``modelName`` + ``modelMode``
gave way to ``modeId``). Each dialect turns a
:class:`~grok2api.upstream.conversation.ConversationRequest` into the JSON
body of one era; the stream that comes back is the same for both.
"""

from __future__ import annotations

from typing import Any, Protocol

from grok2api.upstream.conversation import ConversationRequest
from grok2api.upstream.dialects.mode_id import ModeIdDialect
from grok2api.upstream.dialects.reference import ReferenceDialect

__all__ = ["DIALECTS", "Dialect", "ModeIdDialect", "ReferenceDialect", "get_dialect"]


class Dialect(Protocol):
    """Builds the body of ``POST /rest/app-chat/conversations/new`` and of a
    continued conversation's ``POST .../conversations/{id}/responses``, which
    is the same body plus ``parentResponseId``."""

    name: str

    def build_body(self, request: ConversationRequest) -> dict[str, Any]:
        """Return the JSON body for ``request``.

        ``request.temporary`` and ``request.disable_memory`` are already
        resolved (not ``None``) when the client calls this.
        """
        ...


DIALECTS: dict[str, Dialect] = {
    ReferenceDialect.name: ReferenceDialect(),
    ModeIdDialect.name: ModeIdDialect(),
}


def get_dialect(name: str) -> Dialect:
    """Return the dialect registered under ``name``.

    Raises:
        ValueError: no dialect has that name.
    """
    try:
        return DIALECTS[name]
    except KeyError:
        known = ", ".join(sorted(DIALECTS))
        raise ValueError(f"unknown dialect {name!r}, expected one of {known}") from None
