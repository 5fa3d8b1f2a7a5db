from __future__ import annotations

import base64
import json

import httpx
import pytest
import trio
import trio.testing

from grok2api.errors import (
    EgressBlocked,
    TokenRejected,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from grok2api.upstream import (
    AnswerDelta,
    ConversationRequest,
    ConversationStarted,
    StreamDone,
    ThinkingDelta,
    UpstreamEvent,
)

from .conftest import PLAIN_ANSWER, TOKEN, MakeClient, ScriptedBody, conversation, frame

REQUEST = ConversationRequest(
    message="What is the capital of France?",
    model_name="grok-4",
    model_mode="MODEL_MODE_GROK_4_THINKING",
)


async def _collect(make_client: MakeClient, body: ScriptedBody) -> list[UpstreamEvent]:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    client = make_client(handler)
    async with client.open_conversation(TOKEN, REQUEST) as stream:
        return [event async for event in stream]


async def test_client_posts_conversation_and_yields_events(
    make_client: MakeClient,
) -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=ScriptedBody(*PLAIN_ANSWER))

    client = make_client(handler)
    async with client.open_conversation(TOKEN, REQUEST) as stream:
        events = [event async for event in stream]
        assert stream.conversation_id == "7c1f2a90"
        assert stream.model_hash == "mh-3e7"
    await client.aclose()

    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "http://grok.test/rest/app-chat/conversations/new"
    assert request.headers["cookie"] == f"sso={TOKEN}; sso-rw={TOKEN}"
    assert request.headers["accept-encoding"] == "gzip, deflate"
    body = json.loads(request.content)
    assert body["modelName"] == "grok-4"
    assert body["message"] == REQUEST.message
    assert events[0] == ConversationStarted("7c1f2a90")
    assert [e.text for e in events if isinstance(e, AnswerDelta)] == [
        "Paris",
        " is it.",
    ]
    assert isinstance(events[-1], StreamDone)
    assert client.statistics().requests == 1


@pytest.mark.parametrize(
    ("status", "headers", "body", "error_type"),
    [
        (401, {}, b'{"error":"invalid-credentials"}', TokenRejected),
        (
            403,
            {"content-type": "text/html"},
            b"<title>Just a moment...</title>",
            EgressBlocked,
        ),
        (429, {"retry-after": "12"}, b'{"remainingQueries":0}', UpstreamRateLimited),
        (502, {}, b"", UpstreamUnavailable),
    ],
)
async def test_client_classifies_refusals(
    make_client: MakeClient,
    status: int,
    headers: dict[str, str],
    body: bytes,
    error_type: type[Exception],
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, content=body)

    client = make_client(handler)
    with pytest.raises(error_type) as caught:
        async with client.open_conversation(TOKEN, REQUEST):
            pytest.fail("a refused conversation must not open")
    if isinstance(caught.value, UpstreamRateLimited):
        assert (caught.value.remaining, caught.value.retry_after) == (0, 12.0)


async def test_client_in_band_error_on_first_line_raises_before_commit(
    make_client: MakeClient,
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b'{"error":{"code":8,"message":"Too many requests"}}\n'
        )

    client = make_client(handler)
    async with client.open_conversation(TOKEN, REQUEST) as stream:
        with pytest.raises(UpstreamRateLimited) as caught:
            await stream.first_event()
    assert caught.value.charged is True


async def test_client_first_event_skips_header_without_consuming(
    make_client: MakeClient,
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=ScriptedBody(*PLAIN_ANSWER))

    client = make_client(handler)
    async with client.open_conversation(TOKEN, REQUEST) as stream:
        first = await stream.first_event()
        assert first == await stream.first_event()
        events = [event async for event in stream]
    assert isinstance(first, ThinkingDelta)
    assert events[:2] == [ConversationStarted("7c1f2a90"), first]


async def test_client_in_band_error_later_follows_earlier_events(
    make_client: MakeClient,
) -> None:
    body = [conversation(), frame(token="Par", messageTag="final")]
    body.append(frame(error={"message": "You've reached your usage limit."}))
    received: list[UpstreamEvent] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=ScriptedBody(*body))

    client = make_client(handler)
    with pytest.raises(UpstreamRateLimited):
        async with client.open_conversation(TOKEN, REQUEST) as stream:
            async for event in stream:
                received.append(event)
    assert received == [ConversationStarted("c-1"), AnswerDelta("Par")]


async def test_client_connect_failure_is_egress(make_client: MakeClient) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = make_client(handler)
    with pytest.raises(EgressBlocked):
        async with client.open_conversation(TOKEN, REQUEST):
            pass


async def test_client_stream_cut_mid_answer_is_charged_protocol_error(
    make_client: MakeClient,
) -> None:
    broken = ScriptedBody(
        conversation(),
        frame(token="Par", messageTag="final"),
        httpx.RemoteProtocolError("peer closed connection"),
    )
    with pytest.raises(UpstreamProtocolError) as caught:
        await _collect(make_client, broken)
    assert caught.value.charged is True
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)


async def test_client_first_frame_timeout(
    make_client: MakeClient, autojump_clock: trio.testing.MockClock
) -> None:
    started = trio.current_time()
    with pytest.raises(UpstreamTimeout, match="first_frame_timeout") as caught:
        await _collect(make_client, ScriptedBody(3600.0))
    assert trio.current_time() - started == pytest.approx(5.0)
    assert caught.value.charged is True


async def test_client_idle_timeout_after_first_event(
    make_client: MakeClient, autojump_clock: trio.testing.MockClock
) -> None:
    stalls = ScriptedBody(
        conversation(), frame(token="Par", messageTag="final"), 3600.0
    )
    started = trio.current_time()
    with pytest.raises(UpstreamTimeout, match="idle_timeout"):
        await _collect(make_client, stalls)
    assert trio.current_time() - started == pytest.approx(10.0)


async def test_client_total_timeout_bounds_a_trickle(
    make_client: MakeClient, autojump_clock: trio.testing.MockClock
) -> None:
    trickle = ScriptedBody(
        conversation(), then_forever=frame(token=".", messageTag="final"), every=4.0
    )
    started = trio.current_time()
    with pytest.raises(UpstreamTimeout, match="total_timeout"):
        await _collect(make_client, trickle)
    assert trio.current_time() - started == pytest.approx(60.0)


async def test_client_cancellation_closes_upstream_response(
    make_client: MakeClient,
) -> None:
    body = ScriptedBody(
        conversation(), then_forever=frame(token="x", messageTag="final")
    )
    reading = trio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    client = make_client(handler)

    async def consume() -> None:
        async with client.open_conversation(TOKEN, REQUEST) as stream:
            async for _ in stream:
                reading.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await reading.wait()
            assert client.statistics().open_streams == 1
            nursery.cancel_scope.cancel()
    assert body.closed.is_set()
    assert client.statistics().open_streams == 0


async def test_upload_file_sends_base64_and_returns_ids(
    make_client: MakeClient,
) -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/rest/app-chat/upload-file"
        seen.append(json.loads(request.content))
        return httpx.Response(
            200, json={"fileMetadataId": "f-1", "fileUri": "users/U/f-1/content"}
        )

    client = make_client(handler)
    uploaded = await client.upload_file(TOKEN, "cat.png", "image/png", b"\x89PNG")

    assert seen == [
        {
            "fileName": "cat.png",
            "fileMimeType": "image/png",
            "content": base64.b64encode(b"\x89PNG").decode(),
        }
    ]
    assert uploaded.file_metadata_id == "f-1"
    assert uploaded.asset_url == "http://assets.grok.test/users/U/f-1/content"


async def test_upload_file_accepts_file_id_and_classifies_refusal(
    make_client: MakeClient,
) -> None:
    answers = iter(
        [httpx.Response(200, json={"fileId": "f-2"}), httpx.Response(401, content=b"")]
    )

    async def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    client = make_client(handler)
    assert (
        await client.upload_file(TOKEN, "a.txt", "text/plain", b"a")
    ).file_metadata_id == "f-2"
    with pytest.raises(TokenRejected):
        await client.upload_file(TOKEN, "a.txt", "text/plain", b"a")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"remainingTokens": 70, "remainingQueries": 9}, (70, None, None)),
        (
            {"windowSizeSeconds": 7200, "remainingQueries": 37, "totalQueries": 50},
            (37, 50, 7200),
        ),
    ],
)
async def test_rate_limits_reads_tokens_then_queries(
    make_client: MakeClient, answer: dict[str, int], expected: tuple[object, ...]
) -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=answer)

    client = make_client(handler)
    limits = await client.rate_limits(TOKEN)
    assert (limits.remaining, limits.total, limits.window_seconds) == expected
    assert seen == [{"requestKind": "DEFAULT", "modelName": "grok-4-1-thinking-1129"}]


async def test_rate_limits_without_numbers_is_a_protocol_error(
    make_client: MakeClient,
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"lowEffortRateLimits": None})

    client = make_client(handler)
    with pytest.raises(UpstreamProtocolError):
        await client.rate_limits(TOKEN, "fast", request_kind=None)


async def test_rest_call_timeout(
    make_client: MakeClient, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await trio.sleep(3600)
        return httpx.Response(200, json={})

    client = make_client(handler)
    with pytest.raises(UpstreamTimeout, match="request_timeout"):
        await client.rate_limits(TOKEN)
