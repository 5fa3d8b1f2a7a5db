"""Fixtures for the upstream tests: options, a mock-backed client, frames."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import httpx
import pytest
import trio

from grok2api.upstream import HttpxTransport, UpstreamClient, UpstreamOptions

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]
MakeClient = Callable[..., UpstreamClient]

TOKEN = "eyJhbGciOi.secret-payload.sig"


def frame(**response: Any) -> bytes:
    """One NDJSON line ``{"result":{"response":{...}}}``."""
    return json.dumps({"result": {"response": response}}).encode() + b"\n"


def conversation(conversation_id: str = "c-1") -> bytes:
    """The header line of a new conversation."""
    payload = {"result": {"conversation": {"conversationId": conversation_id}}}
    return json.dumps(payload).encode() + b"\n"


PLAIN_ANSWER = [
    conversation("7c1f2a90"),
    frame(userResponse={"responseId": "u-4f2d"}),
    frame(token="Thinking.", isThinking=True, messageTag="analysis", responseId="r"),
    frame(llmInfo={"modelHash": "mh-3e7"}, responseId="r"),
    frame(token="Paris", isThinking=False, messageTag="final", responseId="r"),
    frame(token=" is it.", isThinking=False, messageTag="final", responseId="r"),
    frame(
        modelResponse={
            "responseId": "r",
            "message": "Paris is it.",
            "generatedImageUrls": [],
            "cardAttachmentsJson": [],
            "metadata": {"llm_info": {"modelHash": "mh-3e7"}},
        }
    ),
    frame(finalMetadata={}, isSoftStop=True),
]


class ScriptedBody(httpx.AsyncByteStream):
    """A streamed response body that plays a script.

    ``bytes`` steps are sent as one chunk each, numbers are pauses in
    seconds, exceptions are raised. After the script, ``then_forever`` (when
    given) is sent every ``every`` seconds until the client closes the body.
    """

    def __init__(
        self,
        *steps: bytes | float | BaseException,
        then_forever: bytes | None = None,
        every: float = 0.001,
    ) -> None:
        self._steps = list(steps)
        self._forever = then_forever
        self._every = every
        self.closed = trio.Event()

    def __aiter__(self) -> ScriptedBody:  # type: ignore[override]
        return self

    async def __anext__(self) -> bytes:
        while not self.closed.is_set():
            if not self._steps:
                if self._forever is None:
                    break
                await trio.sleep(self._every)
                return self._forever
            step = self._steps.pop(0)
            if isinstance(step, bytes):
                return step
            if isinstance(step, BaseException):
                raise step
            await trio.sleep(step)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed.set()


@pytest.fixture
def options() -> UpstreamOptions:
    """Options aimed at a fake plain-HTTP upstream, with short timeouts."""
    return UpstreamOptions(
        base_url="http://grok.test",
        assets_url="http://assets.grok.test",
        transport="httpx",
        first_frame_timeout=5.0,
        idle_timeout=10.0,
        total_timeout=60.0,
        request_timeout=5.0,
    )


@pytest.fixture
def make_client(
    options: UpstreamOptions,
) -> MakeClient:
    """Build an :class:`UpstreamClient` whose network is an async handler."""

    def build(handler: Handler, **changes: Any) -> UpstreamClient:
        transport = HttpxTransport(transport=httpx.MockTransport(handler))
        return UpstreamClient(attrs.evolve(options, **changes), transport)

    return build
