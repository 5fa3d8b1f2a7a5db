"""Conversation continuity: replying inside the upstream conversation an
earlier answer came from (``chat.continue_conversations``).

OpenAI clients send the whole history with every request. After an answer,
the gateway stores a *binding* that says which upstream conversation, which
response in it and which token produced that answer. Its name is an HMAC
over the caller and the history including the answer, exactly as the client
got it, so:

* storage holds no conversation text, and nobody can look a binding up
  without knowing the answer it ends with;
* two API keys sending the same history never share an upstream
  conversation, because the caller is part of the name;
* an edited history (a changed answer, a different system prompt, another
  image) has another name and starts a fresh conversation.

A binding lives for ``chat.conversation_ttl_sec``. Nothing is ever shared or
cloned upstream: a conversation is continued only on the token that owns it.
Storage trouble never fails a request here; the request then simply starts a
fresh conversation, as it would with the feature off.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio

from grok2api.api.chat_request import ChatMessage
from grok2api.api.completion import Outcome
from grok2api.errors import StorageError
from grok2api.gateway import Gateway
from grok2api.storage import Storage

__all__ = [
    "BINDING_KEY_VALUE",
    "Binding",
    "binding_name",
    "caller_identity",
    "find_binding",
    "remember_answer",
    "split_at_last_answer",
]

log = logging.getLogger(__name__)

#: The named storage value holding the HMAC key all workers share.
BINDING_KEY_VALUE = "conversation.binding_key"
_NAME_PREFIX = "conv:"

# One key per open storage, loaded on first use; a worker opens one storage
# for its lifetime, and tests that open several get one key each.
_binding_keys: weakref.WeakKeyDictionary[Storage, bytes] = weakref.WeakKeyDictionary()


@attrs.frozen
class Binding:
    """Where an answer lives upstream: conversation, response and token."""

    conversation_id: str
    response_id: str
    token_id: str

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Binding | None:
        """The binding stored as ``text``, or ``None`` if it is not one."""
        try:
            fields = json.loads(text)
            values = [fields[name] for name in ("conversation_id", "response_id")]
            values.append(fields["token_id"])
        except (ValueError, TypeError, KeyError):
            return None
        if not all(isinstance(value, str) and value for value in values):
            return None
        return cls(*values)


def caller_identity(scope: Mapping[str, Any]) -> str:
    """Who is asking: a managed key's id, else ``master`` or ``anonymous``."""
    key_id = scope.get("grok2api.key_id")
    if key_id:
        return f"key:{key_id}"
    return f"name:{scope.get('grok2api.key_name') or 'anonymous'}"


def split_at_last_answer(
    messages: Sequence[ChatMessage],
) -> tuple[tuple[ChatMessage, ...], tuple[ChatMessage, ...]] | None:
    """The history up to and including the last assistant message, and the
    turns after it; ``None`` when there is no answer or nothing after it."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "assistant":
            if index == len(messages) - 1:
                return None
            return tuple(messages[: index + 1]), tuple(messages[index + 1 :])
    return None


def binding_name(key: bytes, caller: str, history: Sequence[ChatMessage]) -> str:
    """The storage name of the binding for ``history`` asked by ``caller``.

    Text is compared with surrounding whitespace stripped, as clients often
    trim what they send back; media count by a digest of their URL or data.
    """
    canonical = json.dumps(
        {
            "caller": caller,
            "messages": [
                [
                    message.role,
                    message.text.strip(),
                    [
                        [part.kind, _digest(part.url or part.data or "")]
                        for part in message.media
                    ],
                ]
                for message in history
            ],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    mac = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256)
    return _NAME_PREFIX + mac.hexdigest()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


async def find_binding(
    gateway: Gateway, caller: str, messages: Sequence[ChatMessage]
) -> tuple[Binding, tuple[ChatMessage, ...]] | None:
    """The binding that ``messages`` continue, and the turns after it.

    Returns:
        ``None`` when there is nothing to continue, no live binding, or
        storage did not answer (logged).
    """
    split = split_at_last_answer(messages)
    if split is None:
        return None
    history, new_turns = split
    storage = gateway.storage
    stored: str | None = None
    with _storage_deadline(gateway) as scope:
        try:
            key = await _binding_key(storage)
            name = binding_name(key, caller, history)
            stored = await storage.get_expiring(name, time.time())
        except StorageError as exc:
            log.error(
                "could not look up a conversation binding (%s); starting a fresh "
                "conversation",
                exc,
            )
            return None
    if scope.cancelled_caught:
        log.error(
            "conversation binding lookup timed out; starting a fresh conversation"
        )
        return None
    if stored is None:
        log.debug("continuity binding=miss")
        return None
    binding = Binding.from_json(stored)
    if binding is None:
        log.error("ignoring an unreadable conversation binding; starting afresh")
        return None
    log.debug(
        "continuity binding=hit token=%s conversation=%s",
        binding.token_id,
        binding.conversation_id,
    )
    return binding, new_turns


async def remember_answer(
    gateway: Gateway,
    caller: str,
    messages: Sequence[ChatMessage],
    answer: str,
    outcome: Outcome,
) -> None:
    """Store the binding for ``messages`` followed by ``answer``.

    ``answer`` must be the assistant text exactly as the client received it.
    Nothing is stored when the upstream did not name its conversation and
    response, when the gateway cut the answer short (the upstream would
    remember text the client never saw), or when the answer is empty (a
    client cannot send it back: empty assistant messages are dropped when a
    request is parsed).
    """
    if (
        outcome.conversation_id is None
        or outcome.response_id is None
        or outcome.cut_short
        or not answer.strip()
    ):
        return
    binding = Binding(outcome.conversation_id, outcome.response_id, outcome.token_id)
    history = (*messages, ChatMessage("assistant", answer))
    storage = gateway.storage
    now = time.time()
    expires_at = now + gateway.settings.chat.conversation_ttl_sec
    with _storage_deadline(gateway) as scope:
        try:
            key = await _binding_key(storage)
            name = binding_name(key, caller, history)
            await storage.put_expiring(name, binding.to_json(), now, expires_at)
        except StorageError as exc:
            log.error(
                "could not store a conversation binding (%s); the next turn "
                "starts a fresh conversation",
                exc,
            )
            return
    if scope.cancelled_caught:
        log.error(
            "storing a conversation binding timed out; the next turn starts a "
            "fresh conversation"
        )


def _storage_deadline(gateway: Gateway) -> trio.CancelScope:
    return trio.move_on_after(gateway.settings.timeout.storage_timeout)


async def _binding_key(storage: Storage) -> bytes:
    key = _binding_keys.get(storage)
    if key is None:
        # Workers racing on first use all end up with the one stored winner.
        stored = await storage.put_value_if_absent(
            BINDING_KEY_VALUE, secrets.token_hex(32)
        )
        key = _binding_keys[storage] = stored.encode("utf-8")
    return key
