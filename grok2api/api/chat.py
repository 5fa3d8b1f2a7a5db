"""``POST /v1/chat/completions``: the gateway's main job.

:func:`answer_chat` turns a decoded request body into the answer;
:mod:`grok2api.api.direct_chat` serves the route and writes it. A
non-streaming request runs its completion inside the request, so a client
that goes away cancels it with the request. A streaming request needs the
upstream read while the response body is being written, and a response body
cannot own a nursery: the completion runs as a task in the app's nursery under
its own cancel scope, feeding a channel that the body drains. The body cancels
that scope when it ends for any reason, a client disconnect included.

With ``chat.continue_conversations`` on, a request that continues an earlier
answer is planned as a reply inside that upstream conversation
(:mod:`grok2api.api.continuity`), and every finished answer is remembered
before the client sees its end, so an immediate next turn finds it.

A video model (``grok-imagine-1.0-video``) is planned by
:mod:`grok2api.api.video` instead; its job is streamed or collected here
like any answer.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import trio

from grok2api.api.chat_request import ChatRequest, parse_chat_request
from grok2api.api.completion import (
    CompletionPlan,
    Continuation,
    Outcome,
    Sink,
    run_completion,
)
from grok2api.api.continuity import caller_identity, find_binding, remember_answer
from grok2api.api.errors import as_api_error, sse_error_event
from grok2api.api.media_input import load_media
from grok2api.api.models_routes import served_model
from grok2api.api.prompt import flatten_messages, media_parts
from grok2api.api.shaping import Delta
from grok2api.api.sse import DONE, KEEPALIVE, Failure, StreamReader, start_producer
from grok2api.api.video import parse_video_config, plan_video
from grok2api.errors import ApiError, Grok2APIError
from grok2api.gateway import Gateway
from grok2api.models import ModelKind, ModelSpec
from grok2api.security.limits import check_model_allowed

__all__ = ["ChatAnswer", "answer_chat"]

log = logging.getLogger(__name__)

_STARTED = object()

#: Stores the binding of a finished answer: called with the answer text as
#: the client got it and the outcome.
_Remember = Callable[[str, Outcome], Awaitable[None]]
#: Serves the completion into a sink: a chat answer or a video.
_Run = Callable[[Sink], Awaitable[Outcome]]


@attrs.frozen
class ChatAnswer:
    """What the chat route sends: a whole JSON body, or SSE events."""

    body: bytes = b""
    events: AsyncIterator[bytes] | None = None


async def answer_chat(
    gateway: Gateway,
    scope: dict[str, Any],
    body: Any,
    media_base_url: Callable[[], str],
) -> ChatAnswer:
    """Serve one chat completion request.

    Args:
        gateway: the worker's gateway.
        scope: the request's ASGI scope; the model, the token that served
            it and the stream flag are left there for the access log.
        body: the decoded JSON body.
        media_base_url: returns where links to generated media point;
            raises ``ApiError`` when the request's host cannot make one.

    Raises:
        Grok2APIError: anything answered with an error envelope before the
            first byte of the answer.
    """
    settings = gateway.settings
    chat = parse_chat_request(body, default_stream=settings.chat.stream)
    scope["grok2api.stream"] = chat.stream
    scope["grok2api.model"] = chat.model
    # Checked whatever the model, as the API document describes the field.
    video_config = parse_video_config(body.get("video_config"))
    model = served_model(
        gateway,
        chat.model,
        (ModelKind.CHAT, ModelKind.VIDEO),
        "is not a chat model and cannot be used here.",
    )
    check_model_allowed(scope.get("grok2api.api_key"), model.id, chat.model)
    remember: _Remember | None = None
    run: _Run
    if model.kind is ModelKind.VIDEO:
        run = await plan_video(gateway, chat, video_config, model, media_base_url())
    else:
        caller = caller_identity(scope)
        continuing = settings.chat.continue_conversations
        plan = await _plan(
            gateway, chat, model, caller if continuing else None, media_base_url
        )
        run = functools.partial(run_completion, gateway, plan)
        if continuing:
            remember = functools.partial(
                remember_answer, gateway, caller, chat.messages
            )
    response_id = f"chatcmpl-{uuid.uuid4().hex}"
    if chat.stream:
        return await _stream(gateway, chat, run, response_id, remember, scope)
    return await _collect(chat, run, response_id, remember, scope)


async def _plan(
    gateway: Gateway,
    chat: ChatRequest,
    model: ModelSpec,
    caller: str | None,
    media_base_url: Callable[[], str],
) -> CompletionPlan:
    """The completion to run; ``caller`` set means continuity is on.

    Every media part is loaded, earlier turns' too: a continuation that the
    upstream refuses falls back to a fresh conversation, which needs them.
    """
    settings = gateway.settings
    media = await load_media(
        media_parts(chat.messages),
        max_bytes=settings.security.max_body_size_mb * 1024 * 1024,
        timeout=settings.network.timeout,
        allow_hosts=settings.security.media_fetch_allow_hosts,
        proxy=settings.network.base_proxy_url or None,
    )
    show = (
        chat.show_thinking if chat.show_thinking is not None else settings.chat.thinking
    )
    continuation = None
    found = await find_binding(gateway, caller, chat.messages) if caller else None
    if found is not None:
        binding, new_turns = found
        # The new turns come last, so their media are the tail of the list.
        new_media = len(media_parts(new_turns))
        continuation = Continuation(
            conversation_id=binding.conversation_id,
            parent_response_id=binding.response_id,
            token_id=binding.token_id,
            prompt=flatten_messages(new_turns),
            media=tuple(media[len(media) - new_media :]),
        )
    return CompletionPlan(
        model=model,
        prompt=flatten_messages(chat.messages),
        media=tuple(media),
        show_reasoning=show,
        stop=chat.stop,
        max_tokens=chat.max_tokens,
        temperature=chat.temperature,
        top_p=chat.top_p,
        reasoning_effort=chat.reasoning_effort
        if chat.reasoning_effort != "none"
        else None,
        continuation=continuation,
        media_base_url=_image_links_base(media_base_url),
    )


def _image_links_base(media_base_url: Callable[[], str]) -> str | None:
    try:
        return media_base_url()
    except ApiError:
        # A bad Host header must not fail answers that make no image.
        return None


# -- non-streaming ------------------------------------------------------------


@attrs.define
class _CollectSink:
    #: The request's ASGI scope, where the access log finds the token.
    asgi_scope: dict[str, Any]
    content: list[str] = attrs.Factory(list)
    reasoning: list[str] = attrs.Factory(list)

    def serving(self, token_id: str) -> None:
        self.asgi_scope["grok2api.token_id"] = token_id

    @property
    def committed(self) -> bool:
        return False

    async def started(self) -> None:
        pass

    async def delta(self, delta: Delta) -> None:
        if delta.content:
            self.content.append(delta.content)
        if delta.reasoning:
            self.reasoning.append(delta.reasoning)

    def reset(self) -> None:
        self.content.clear()
        self.reasoning.clear()


async def _collect(
    chat: ChatRequest,
    run: _Run,
    response_id: str,
    remember: _Remember | None,
    scope: dict[str, Any],
) -> ChatAnswer:
    sink = _CollectSink(scope)
    outcome = await run(sink)
    content = "".join(sink.content)
    if remember is not None:
        await remember(content, outcome)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "refusal": None,
    }
    if sink.reasoning:
        message["reasoning_content"] = "".join(sink.reasoning)
    body = {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": outcome.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": outcome.usage,
    }
    if outcome.model_hash:
        body["system_fingerprint"] = outcome.model_hash
    return ChatAnswer(body=json.dumps(body, ensure_ascii=False).encode())


# -- streaming ----------------------------------------------------------------


@attrs.define
class _ChannelSink:
    send: trio.MemorySendChannel[object]
    #: The request's ASGI scope, where the access log finds the token; a
    #: stream cut short is logged with the token that served it.
    asgi_scope: dict[str, Any]
    committed: bool = False
    #: The answer text sent so far, kept only when it is to be remembered.
    content: list[str] | None = None

    def serving(self, token_id: str) -> None:
        self.asgi_scope["grok2api.token_id"] = token_id

    async def started(self) -> None:
        if not self.committed:
            self.committed = True
            await _put(self.send, _STARTED)

    async def delta(self, delta: Delta) -> None:
        await self.started()
        if self.content is not None and delta.content:
            self.content.append(delta.content)
        await _put(self.send, delta)

    def reset(self) -> None:
        pass


async def _produce(
    run: _Run,
    asgi_scope: dict[str, Any],
    send: trio.MemorySendChannel[object],
    scope: trio.CancelScope,
    *,
    remember: _Remember | None,
) -> None:
    # The channel is closed without a checkpoint of its own: the reader
    # wakes on what was sent, and an extra pass of the scheduler per answer
    # is measurable CPU.
    with scope:
        try:
            sink = _ChannelSink(send, asgi_scope, content=[] if remember else None)
            try:
                outcome = await run(sink)
                if remember is not None and sink.content is not None:
                    await remember("".join(sink.content), outcome)
            except Grok2APIError as exc:
                await _put(send, Failure(exc))
            except Exception as exc:
                log.exception("chat completion failed unexpectedly; answering 500")
                await _put(send, Failure(exc))
            else:
                await _put(send, outcome)
        finally:
            send.close()


async def _put(send: trio.MemorySendChannel[object], item: object) -> None:
    # Skipping the scheduler while the buffer has room lets a burst of
    # parsed tokens reach the response body together.
    try:
        send.send_nowait(item)
    except trio.WouldBlock:
        await send.send(item)


async def _stream(
    gateway: Gateway,
    chat: ChatRequest,
    run: _Run,
    response_id: str,
    remember: _Remember | None,
    asgi_scope: dict[str, Any],
) -> ChatAnswer:
    first, receive, scope = await start_producer(
        gateway.nursery,
        functools.partial(_produce, run, asgi_scope, remember=remember),
    )
    chunks = _ChunkWriter(response_id, chat.model, chat.include_usage)
    return ChatAnswer(
        events=_sse_body(gateway, chunks, first, receive, scope, asgi_scope)
    )


async def _sse_body(
    gateway: Gateway,
    chunks: _ChunkWriter,
    first: object,
    receive: trio.MemoryReceiveChannel[object],
    scope: trio.CancelScope,
    asgi_scope: dict[str, Any],
) -> AsyncIterator[bytes]:
    reader = StreamReader(
        first, receive, gateway.settings.performance.sse_keepalive_sec
    )
    # Events that are already waiting leave in one write: a fast upstream
    # then costs a few writes per answer, not one per piece. Nothing waits
    # for more to come, so no event is ever held back.
    out = [chunks.role()]
    try:
        while True:
            if out:
                item = reader.next_ready()
                if item is None:
                    yield b"".join(out)
                    out = []
                    continue
            else:
                try:
                    item = await reader.next()
                except trio.EndOfChannel:
                    return
                if item is None:
                    yield KEEPALIVE
                    continue
            if isinstance(item, Delta):
                deltas = [item]
                while (waiting := reader.next_ready()) is not None:
                    if not isinstance(waiting, Delta):
                        reader.put_back(waiting)
                        break
                    deltas.append(waiting)
                out.append(chunks.deltas(deltas))
            elif isinstance(item, Outcome):
                out.append(chunks.finish(item))
                yield b"".join(out)
                return
            elif isinstance(item, Failure):
                error = as_api_error(item.error)
                asgi_scope["grok2api.error"] = error.type
                yield b"".join([*out, sse_error_event(error), DONE])
                return
    finally:
        scope.cancel()
        receive.close()


# Stands for the text while a delta chunk's frame is rendered.
_TEXT_MARK = "grok2api-delta-text"


class _ChunkWriter:
    """Renders chat.completion.chunk events; id, created and model never change."""

    def __init__(self, response_id: str, model: str, include_usage: bool) -> None:
        self._base = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self._include_usage = include_usage
        # Every piece of a streamed answer is the same chunk around one
        # string: render the rest once, since encoding the whole chunk for
        # each piece cost several times what encoding the text does.
        self._delta_frames = {
            field: self._delta_event(field, _TEXT_MARK).rpartition(
                json.dumps(_TEXT_MARK).encode()
            )[::2]
            for field in ("content", "reasoning_content")
        }

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {**self._base, "choices": choices, **extra}
        if self._include_usage and "usage" not in extra:
            chunk["usage"] = None
        return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

    def role(self) -> bytes:
        return self._event(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "finish_reason": None,
                    "logprobs": None,
                }
            ]
        )

    def deltas(self, deltas: list[Delta]) -> bytes:
        """One chunk per run of reasoning or of answer text, in order."""
        out: list[bytes] = []
        field, parts = "", []
        for delta in deltas:
            for name, text in (
                ("reasoning_content", delta.reasoning),
                ("content", delta.content),
            ):
                if not text:
                    continue
                if name != field and parts:
                    out.append(self._delta(field, "".join(parts)))
                    parts = []
                field = name
                parts.append(text)
        if parts:
            out.append(self._delta(field, "".join(parts)))
        return b"".join(out)

    def _delta(self, field: str, text: str) -> bytes:
        head, tail = self._delta_frames[field]
        return head + json.dumps(text, ensure_ascii=False).encode() + tail

    def _delta_event(self, field: str, text: str) -> bytes:
        return self._event(
            [
                {
                    "index": 0,
                    "delta": {field: text},
                    "finish_reason": None,
                    "logprobs": None,
                }
            ]
        )

    def finish(self, outcome: Outcome) -> bytes:
        extra = {"system_fingerprint": outcome.model_hash} if outcome.model_hash else {}
        out = self._event(
            [
                {
                    "index": 0,
                    "delta": {},
                    "finish_reason": outcome.finish_reason,
                    "logprobs": None,
                }
            ],
            **extra,
        )
        if self._include_usage:
            out += self._event([], usage=outcome.usage)
        return out + DONE
