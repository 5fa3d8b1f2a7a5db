"""The NDJSON lines of a chat answer, built once per request.

The text is deterministic so tests can predict it: the answer starts with
``You said: `` and the first 40 characters of the message, then filler words
up to the configured token count. Lines are assembled from pre-encoded byte
fragments because this is the benchmark's baseline: the only per-token work is
one ``json.dumps`` of a short string.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

__all__ = [
    "ChatScript",
    "answer_tokens",
    "build_script",
    "chat_cost",
    "expected_answer",
    "is_thinking_request",
    "thinking_tokens",
]

_FILLER = (" lorem", " ipsum", " dolor", " sit", " amet", " consectetur", " elit")
_SNIPPET = 40
_EXPENSIVE_MODES = frozenset(
    {"MODEL_MODE_EXPERT", "MODEL_MODE_HEAVY", "MODEL_MODE_GROK_4_1_THINKING"}
)
_EXPENSIVE_MODE_IDS = frozenset({"expert", "heavy"})


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def _encoded(text: str) -> bytes:
    return _dumps(text).encode()


def _pieces(head: list[str], count: int) -> list[str]:
    if count <= 0:
        return []
    pieces = list(head)
    while len(pieces) < count:
        pieces.append(_FILLER[(len(pieces) - len(head)) % len(_FILLER)])
    if len(pieces) > count:
        pieces[count - 1 :] = ["".join(pieces[count - 1 :])]
    return pieces


def answer_tokens(
    message: str, count: int, file_names: Sequence[str] = ()
) -> list[str]:
    """Return the answer split into ``count`` tokens (at least one)."""
    head = ["You", " said:", " " + (message[:_SNIPPET] or "(nothing)")]
    if file_names:
        head.append(" [files: " + ", ".join(file_names) + "]")
    return _pieces(head, max(count, 1))


def thinking_tokens(message: str, count: int) -> list[str]:
    """Return ``count`` reasoning tokens (none when ``count`` is 0)."""
    return _pieces(["Thinking", " about:", " " + message[:_SNIPPET]], count)


def expected_answer(
    message: str, answer_token_count: int = 8, file_names: Sequence[str] = ()
) -> str:
    """Return the full answer the emulator gives to ``message``."""
    return "".join(answer_tokens(message, answer_token_count, file_names))


def is_thinking_request(body: dict[str, Any]) -> bool:
    """Whether the request asks for a reasoning mode (either dialect)."""
    mode = body.get("modelMode") or ""
    if isinstance(mode, str) and any(
        word in mode for word in ("THINKING", "EXPERT", "HEAVY")
    ):
        return True
    return body.get("modeId") in _EXPENSIVE_MODE_IDS


def chat_cost(body: dict[str, Any]) -> int:
    """Queries one chat takes from the account's window."""
    if body.get("modelMode") in _EXPENSIVE_MODES:
        return 4
    return 4 if body.get("modeId") in _EXPENSIVE_MODE_IDS else 1


@attrs.define
class ChatScript:
    """The lines of one answer, split where faults may cut in.

    ``preamble`` holds everything before the answer tokens (header, user echo,
    reasoning, ``llmInfo``); ``tokens`` one line per answer token;
    ``closing`` the ``modelResponse`` and end-marker lines.
    ``response_id`` is the model answer's id, ``user_response_id`` the id of
    the echoed user turn.
    """

    conversation_id: str
    response_id: str
    user_response_id: str
    preamble: list[bytes]
    tokens: list[bytes]
    closing: list[bytes]

    def full(self) -> list[bytes]:
        return [*self.preamble, *self.tokens, *self.closing]


def error_line(code: int, message: str) -> bytes:
    """An in-band error line as the later upstream sends it."""
    return _dumps({"error": {"code": code, "message": message}}).encode() + b"\n"


def build_script(
    message: str,
    *,
    thinking: int,
    answer: int,
    model_hash: str,
    file_names: Sequence[str] = (),
    scripted_answer: Sequence[str] = (),
    conversation_id: str | None = None,
) -> ChatScript:
    """Build every line of a normal answer.

    Args:
        scripted_answer: exact answer tokens to send instead of the echo,
            for tests of how a client handles particular text.
        message: the ``message`` field of the request.
        thinking: reasoning tokens to send (0 for none).
        answer: answer tokens to send.
        model_hash: the value of ``llmInfo.modelHash``.
        file_names: names of attached uploads, mentioned in the answer.
        conversation_id: the conversation a reply continues; the answer then
            has no conversation header line. A new one when omitted.
    """
    preamble = []
    if conversation_id is None:
        conversation_id = str(uuid.uuid4())
        preamble.append(
            b'{"result":{"conversation":{"conversationId":"%s",'
            b'"title":"New conversation","starred":false,"temporary":true}}}\n'
            % conversation_id.encode()
        )
    response_id = str(uuid.uuid4())
    user_response_id = str(uuid.uuid4())
    rid = response_id.encode()
    preamble.append(
        b'{"result":{"response":{"userResponse":{"responseId":"%s","sender":"human",'
        b'"message":%s},"isThinking":false,"responseId":"%s"}}}\n'
        % (
            user_response_id.encode(),
            _encoded(message[:200]),
            user_response_id.encode(),
        )
    )

    prefix = b'{"result":{"response":{"token":'
    thinking_suffix = (
        b',"isThinking":true,"messageTag":"analysis","responseId":"%s"}}}\n' % rid
    )
    for token in thinking_tokens(message, thinking):
        preamble.append(prefix + _encoded(token) + thinking_suffix)
    preamble.append(
        b'{"result":{"response":{"llmInfo":{"modelHash":%s},"responseId":"%s"}}}\n'
        % (_encoded(model_hash), rid)
    )

    answer_suffix = (
        b',"isThinking":false,"messageTag":"final","responseId":"%s"}}}\n' % rid
    )
    pieces = list(scripted_answer) or answer_tokens(message, answer, file_names)
    tokens = [prefix + _encoded(token) + answer_suffix for token in pieces]

    model_response = {
        "responseId": response_id,
        "message": "".join(pieces),
        "sender": "assistant",
        "parentResponseId": user_response_id,
        "generatedImageUrls": [],
        "cardAttachmentsJson": [],
        "metadata": {"llm_info": {"modelHash": model_hash}},
    }
    closing = [
        b'{"result":{"response":{"modelResponse":%s,"responseId":"%s"}}}\n'
        % (_dumps(model_response).encode(), rid),
        b'{"result":{"response":{"finalMetadata":{"followUpSuggestions":[],'
        b'"feedbackLabels":[]},"isSoftStop":true,"responseId":"%s"}}}\n' % rid,
    ]
    return ChatScript(
        conversation_id, response_id, user_response_id, preamble, tokens, closing
    )
