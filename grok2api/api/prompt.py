"""Flattening an OpenAI conversation into the one message Grok's web app takes.

A fresh upstream conversation knows nothing of the OpenAI history, so the
whole history travels as text: every turn but the last user turn is prefixed
with its role, turns are separated by blank lines, and the final user turn is
left bare so the model reads it as the question. A continued conversation
(``chat.continue_conversations``) already holds the earlier turns; only the
turns after the last answer are flattened the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from grok2api.api.chat_request import ChatMessage, MediaPart

__all__ = ["flatten_messages", "media_parts"]


def flatten_messages(messages: Sequence[ChatMessage]) -> str:
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].text
    blocks: list[str] = []
    last = len(messages) - 1
    for i, message in enumerate(messages):
        if i == last and message.role == "user":
            blocks.append(message.text)
        else:
            blocks.append(f"{message.role}: {message.text}")
    return "\n\n".join(blocks)


def media_parts(messages: Sequence[ChatMessage]) -> list[MediaPart]:
    return [part for message in messages for part in message.media]
