"""One chat completion against the upstream, with token failover.

:func:`run_completion` leases a token (through the failover loop of
:mod:`grok2api.api.failover`), uploads the request's media with it,
opens the upstream conversation and reads the first frame *before* anything
reaches the client, so an early failure (a 401, a 429, an in-band error on the
first line) moves on to another token invisibly. Once the sink has committed
output to the client, a failure can only be reported, not retried.

A plan may carry a :class:`Continuation` (``chat.continue_conversations``):
the first attempt then replies inside that upstream conversation, on the
token that owns it, with only the new turns. If that token cannot be leased,
or the upstream refuses the reply before anything reached the client, the
completion starts over as a fresh conversation with the whole history; the
client never sees a failure that continuity caused.

The lease is settled on every path: committed when the upstream served the
answer, released when it failed before charging or the client went away,
penalised only when the failure was the token's own fault.
"""

from __future__ import annotations

import functools
import logging
from typing import Protocol

import attrs

from grok2api.api.chat_images import ChatImages
from grok2api.api.failover import AttemptProgress, settled_attempt, with_failover
from grok2api.api.media_input import LoadedMedia
from grok2api.api.shaping import AnswerShaper, Delta
from grok2api.errors import (
    FailureKind,
    StorageUnavailable,
    UpstreamError,
)
from grok2api.filters import FilterChain
from grok2api.gateway import Gateway
from grok2api.models import ModelSpec
from grok2api.storage import Lease
from grok2api.upstream import (
    AnswerDelta,
    ConversationRequest,
    ConversationStarted,
    ImageProgress,
    ModelResponse,
    ThinkingDelta,
    ToolCard,
)

__all__ = ["CompletionPlan", "Continuation", "Outcome", "Sink", "run_completion"]

log = logging.getLogger(__name__)


@attrs.frozen
class Continuation:
    """A reply inside an upstream conversation an earlier answer left behind.

    ``prompt`` and ``media`` are only the turns after that answer; the
    conversation lives in the account of ``token_id``.
    """

    conversation_id: str
    parent_response_id: str
    token_id: str
    prompt: str
    media: tuple[LoadedMedia, ...] = ()


@attrs.frozen
class CompletionPlan:
    """Everything about a chat request that does not depend on the token.

    ``prompt`` and ``media`` are the whole history, for a fresh conversation;
    ``continuation``, when set, is tried first. ``media_base_url`` is where
    links to generated images point (``None`` when the request's address
    was unusable).
    """

    model: ModelSpec
    prompt: str
    media: tuple[LoadedMedia, ...]
    show_reasoning: bool
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None
    continuation: Continuation | None = None
    media_base_url: str | None = None


@attrs.frozen
class Outcome:
    """How a completion ended.

    ``conversation_id`` and ``response_id`` name the upstream conversation
    and the answer in it, when the upstream told; ``cut_short`` is true when
    the gateway stopped reading early (a stop string or ``max_tokens``), so
    the upstream conversation holds more answer than the client got.
    """

    finish_reason: str
    usage: dict[str, object]
    token_id: str
    model_hash: str | None = None
    conversation_id: str | None = None
    response_id: str | None = None
    cut_short: bool = False


class Sink(Protocol):
    """Where a completion's output goes: an SSE stream or a collected answer."""

    @property
    def committed(self) -> bool:
        """True once output reached the client; failover is over then."""

    def serving(self, token_id: str) -> None:
        """The token with this public id is now serving the answer."""

    async def started(self) -> None:
        """The upstream answered its first frame."""

    async def delta(self, delta: Delta) -> None:
        """Emit answer or reasoning text."""

    def reset(self) -> None:
        """Forget uncommitted output before another attempt."""


async def run_completion(gateway: Gateway, plan: CompletionPlan, sink: Sink) -> Outcome:
    """Serve one chat completion, failing over between tokens.

    Raises:
        NoTokenAvailable: no token could take the request.
        UpstreamError: the last attempt's failure when failover gave up.
    """
    tried: set[str] = set()
    if plan.continuation is not None:
        outcome = await _continue(gateway, plan, plan.continuation, sink, tried)
        if outcome is not None:
            return outcome

    async def fresh(lease: Lease, progress: AttemptProgress) -> Outcome:
        return await _attempt(gateway, plan, sink, lease, progress, None)

    return await with_failover(
        gateway,
        plan.model,
        fresh,
        tried=tried,
        output_started=lambda: sink.committed,
        before_retry=sink.reset,
    )


async def _continue(
    gateway: Gateway,
    plan: CompletionPlan,
    continuation: Continuation,
    sink: Sink,
    tried: set[str],
) -> Outcome | None:
    """Try the reply inside the bound conversation; ``None`` means start afresh.

    A token fault or a rate limit puts the token in ``tried`` so the fresh
    attempt goes elsewhere; any other refusal (the conversation expired
    upstream, a 5xx) leaves it eligible.
    """
    token_id = continuation.token_id
    try:
        lease = await gateway.pool.lease_token(plan.model, token_id)
    except StorageUnavailable as exc:
        log.info("continuation skipped token=%s reason=storage (%s)", token_id, exc)
        return None
    if lease is None:
        log.info("continuation skipped token=%s reason=not_leasable", token_id)
        return None

    async def reply(lease: Lease, progress: AttemptProgress) -> Outcome:
        return await _attempt(gateway, plan, sink, lease, progress, continuation)

    try:
        return await settled_attempt(gateway, lease, reply)
    except UpstreamError as exc:
        await gateway.pool.settle_failure(lease, exc)
        if sink.committed:
            raise
        sink.reset()
        if exc.kind in (FailureKind.TOKEN, FailureKind.RATE_LIMIT):
            tried.add(token_id)
        log.info(
            "continuation refused kind=%s status=%s token=%s; starting a fresh "
            "conversation",
            exc.kind.value,
            exc.status,
            token_id,
        )
        return None


async def _attempt(
    gateway: Gateway,
    plan: CompletionPlan,
    sink: Sink,
    lease: Lease,
    progress: AttemptProgress,
    continuation: Continuation | None,
) -> Outcome:
    settings = gateway.settings
    upstream = gateway.upstream
    sink.serving(lease.token_id)
    turn = continuation if continuation is not None else plan
    attachments = []
    for item in turn.media:
        uploaded = await upstream.upload_file(
            lease.secret, item.filename, item.mime_type, item.content
        )
        attachments.append(uploaded.file_metadata_id)

    request = ConversationRequest(
        message=turn.prompt,
        model_name=plan.model.upstream_name,
        model_mode=plan.model.upstream_mode,
        file_attachments=tuple(attachments),
        temperature=plan.temperature,
        top_p=plan.top_p,
        reasoning_effort=plan.reasoning_effort,
        temporary=settings.chat.temporary,
        disable_memory=settings.chat.disable_memory,
        conversation_id=continuation.conversation_id if continuation else None,
        parent_response_id=(continuation.parent_response_id if continuation else None),
    )
    shaper = AnswerShaper(
        filters=FilterChain(gateway.new_filters()),
        show_reasoning=plan.show_reasoning,
        stop=plan.stop,
        max_tokens=plan.max_tokens,
    )
    images = ChatImages(
        gateway,
        lease.secret,
        plan.media_base_url,
        shaper,
        functools.partial(_emit, sink),
    )
    model_hash: str | None = None
    response_id: str | None = None
    saw_answer = False
    async with upstream.open_conversation(lease.secret, request) as stream:
        progress.upstream_accepted = True
        first = True
        batch = _TextBatch()
        async for event in stream:
            if first and not isinstance(event, ConversationStarted):
                # The conversation header says nothing about success; the
                # first real frame does, and only then is the 200 committed.
                await sink.started()
                first = False
            if isinstance(event, ThinkingDelta | AnswerDelta):
                response_id = event.response_id or response_id
                saw_answer = saw_answer or isinstance(event, AnswerDelta)
                batch.add(isinstance(event, AnswerDelta), event.text)
                if stream.buffered():
                    continue  # shape a burst of tokens as one piece of text
                await batch.flush(shaper, sink, images)
            else:
                await batch.flush(shaper, sink, images)
                if isinstance(event, ToolCard):
                    await _emit(sink, await shaper.reasoning(f"\n[{event.summary}]\n"))
                elif isinstance(event, ImageProgress):
                    await images.progress(event)
                elif isinstance(event, ModelResponse):
                    model_hash = event.model_hash or model_hash
                    response_id = event.response_id or response_id
                    if not saw_answer and event.message:
                        # Some modes deliver the answer only in the final frame.
                        saw_answer = True
                        await images.text(event.message)
                    images.listed(event)
            if shaper.finish_reason:
                break
        await batch.flush(shaper, sink, images)
        cut_short = shaper.finish_reason is not None
        if first:
            await sink.started()
        # A continued conversation need not repeat its header line.
        conversation_id = (
            continuation.conversation_id if continuation else stream.conversation_id
        )
    # After the upstream closed: a download must not hold its connection.
    await images.finish()
    await _emit(sink, await shaper.finish())
    assert shaper.finish_reason is not None
    cut_short = cut_short or shaper.finish_reason == "length"
    return Outcome(
        shaper.finish_reason,
        # The upstream reads the whole conversation either way, so usage
        # counts the whole history whether or not it was sent again.
        shaper.usage(plan.prompt),
        lease.token_id,
        model_hash,
        conversation_id=conversation_id,
        response_id=response_id,
        cut_short=cut_short,
    )


@attrs.define
class _TextBatch:
    """Runs of answer and reasoning text waiting to be shaped, in order."""

    runs: list[tuple[bool, list[str]]] = attrs.Factory(list)

    def add(self, is_answer: bool, text: str) -> None:
        if self.runs and self.runs[-1][0] is is_answer:
            self.runs[-1][1].append(text)
        else:
            self.runs.append((is_answer, [text]))

    async def flush(self, shaper: AnswerShaper, sink: Sink, images: ChatImages) -> None:
        runs, self.runs = self.runs, []
        for is_answer, texts in runs:
            text = "".join(texts)
            if is_answer:
                await images.text(text)
            else:
                await _emit(sink, await shaper.reasoning(text))


async def _emit(sink: Sink, delta: Delta) -> None:
    if delta:
        await sink.delta(delta)
