"""Error envelopes, auth and SSE framing as raw HTTP clients see them."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.conftest import ADMIN_KEY, API_KEY, Emulator, Gateway, GatewayFactory

CHAT = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Bearer {API_KEY}"}, 200),
        ({"x-api-key": API_KEY}, 200),
    ],
)
def test_api_key_is_required(
    gateway: Gateway, headers: dict[str, str], status: int
) -> None:
    response = httpx.post(f"{gateway.api}/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert error_of(response)["type"] == "authentication_error"


def test_admin_routes_refuse_api_keys_and_anonymous(gateway: Gateway) -> None:
    url = f"{gateway.url}/v1/admin/tokens"
    assert httpx.get(url).status_code == 401
    assert (
        httpx.get(url, headers={"Authorization": f"Bearer {API_KEY}"}).status_code
        == 403
    )
    assert (
        httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code
        == 200
    )


def test_without_a_configured_key_only_loopback_may_call(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(GROK2API_APP_API_KEY="", GROK2API_APP_APP_PASSWORD="")
    # The test client is on loopback, so it is let in without a key...
    assert httpx.get(f"{gateway.api}/models").status_code == 200
    # ...but the admin API is not: without a configured password one was
    # generated and printed, and nobody gets in without it.
    response = httpx.get(f"{gateway.url}/v1/admin/tokens")
    assert response.status_code == 401
    assert "one was generated" in gateway.log()


@pytest.mark.parametrize(
    ("content", "status", "param"),
    [
        (b"{not json", 400, "body"),
        (b"", 400, "body"),
        (b"[1, 2]", 400, "body"),
        (
            json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(),
            400,
            "model",
        ),
        (json.dumps({"model": "grok-4"}).encode(), 400, "messages"),
        (
            json.dumps(
                {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
            ).encode(),
            404,
            "model",
        ),
        (
            json.dumps({"model": "grok-4", "messages": [], "stream": True}).encode(),
            400,
            "messages",
        ),
    ],
)
def test_bad_requests_get_the_openai_envelope(
    gateway: Gateway, content: bytes, status: int, param: str
) -> None:
    with gateway.client() as client:
        response = client.post(
            "/v1/chat/completions",
            content=content,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == status
    error = error_of(response)
    assert error["param"] == param


def test_unknown_route_and_wrong_method_are_json_errors(gateway: Gateway) -> None:
    with gateway.client() as client:
        assert error_of(client.get("/v1/nothing"))["code"] == "not_found"
        response = client.get("/v1/chat/completions")
        assert response.status_code == 405
        assert error_of(response)["code"] == "method_not_allowed"


def test_oversized_body_is_a_413(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(GROK2API_SECURITY_MAX_BODY_SIZE_MB="1")
    big = {
        "model": "grok-4",
        "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}],
    }
    with gateway.client() as client:
        response = client.post("/v1/chat/completions", json=big)
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_stream_framing_and_headers(gateway: Gateway) -> None:
    with (
        gateway.client() as client,
        client.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        body = response.read().decode()
    events = body.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-2]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "usage" not in chunks[-1]


@pytest.mark.parametrize("include_usage", [False, True])
def test_every_stream_chunk_has_the_same_frame(
    gateway: Gateway, include_usage: bool
) -> None:
    request = {
        **CHAT,
        "model": "grok-4-thinking",
        "stream": True,
        "stream_options": {"include_usage": include_usage},
    }
    with gateway.client() as client:
        body = client.post("/v1/chat/completions", json=request).text
    chunks = [json.loads(e[len("data: ") :]) for e in body.split("\n\n")[:-2]]
    if include_usage:
        *chunks, totals = chunks
        assert totals["choices"] == [] and totals["usage"]["total_tokens"] > 0
    frame = {"id", "object", "created", "model", "choices"}
    frame |= {"usage"} if include_usage else set()
    *pieces, finish = chunks
    assert {frozenset(c) for c in pieces} == {frozenset(frame)}
    assert set(finish) - frame <= {"system_fingerprint"} and frame <= set(finish)
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert all(c.get("usage", None) is None for c in chunks)
    fields = {name for c in chunks for name in c["choices"][0]["delta"]}
    assert {"content", "reasoning_content"} <= fields
    for chunk in chunks:
        [choice] = chunk["choices"]
        assert choice["index"] == 0 and choice["logprobs"] is None


def test_failure_before_the_first_byte_is_json_not_an_empty_stream(
    gateway: Gateway, emulator: Emulator
) -> None:
    emulator.control.fault("500", times=None)
    with gateway.client() as client:
        response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/json")
    assert error_of(response)["code"] == "upstream_error"


def test_keepalive_comments_while_the_upstream_is_slow(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    emulator.control.configure(line_delay=0.4, answer_tokens=4, thinking_tokens=0)
    gateway = gateway_factory(["tok-a"], GROK2API_PERFORMANCE_SSE_KEEPALIVE_SEC="0.1")
    with gateway.client() as client:
        body = client.post("/v1/chat/completions", json={**CHAT, "stream": True}).text
    assert ": keepalive\n\n" in body
    assert body.rstrip().endswith("data: [DONE]")


def test_access_log_has_one_line_per_request_without_secrets(gateway: Gateway) -> None:
    with gateway.client() as client:
        client.post("/v1/chat/completions", json=CHAT)
    time.sleep(0.2)
    log = gateway.log()
    lines = [line for line in log.splitlines() if "POST /v1/chat/completions" in line]
    assert len(lines) == 1
    assert "200 model=grok-4 token=" in lines[0] and "duration_ms=" in lines[0]
    for secret in ("tok-a", "tok-b", API_KEY, ADMIN_KEY):
        assert secret not in log


@pytest.mark.parametrize(
    "content",
    [
        b'{"model": "grok-4", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": "grok-4", "max_tokens": 1' + b"0" * 5000 + b"}",
        b"[" * 100_000,
    ],
)
def test_json_the_parser_refuses_is_a_400_not_a_500(
    gateway: Gateway, content: bytes
) -> None:
    with gateway.client() as client:
        response = client.post(
            "/v1/chat/completions",
            content=content,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_a_valid_surrogate_pair_is_fine(gateway: Gateway) -> None:
    content = (
        b'{"model": "grok-4", '
        b'"messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    )
    with gateway.client() as client:
        response = client.post(
            "/v1/chat/completions",
            content=content,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 200
    assert "\U0001f600" in response.json()["choices"][0]["message"]["content"]


def test_the_connection_stays_usable_after_a_413(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(GROK2API_SECURITY_MAX_BODY_SIZE_MB="1")
    with gateway.client() as client:
        big = client.post("/v1/chat/completions", content=b"x" * (3 * 1024 * 1024))
        assert big.status_code == 413
        after = client.get("/v1/models", timeout=5)
        assert after.status_code == 200


@pytest.mark.parametrize("host", ["a..b", ".", "x" * 64 + ".example"])
def test_a_host_header_that_names_no_host_is_a_400_not_a_500(
    gateway: Gateway, host: str
) -> None:
    # Werkzeug fails on these while building the request context, before any
    # route runs; the images route is one that builds links from Host.
    with gateway.client() as client:
        for path in ("/health", "/v1/images/generations"):
            response = client.post(path, json={"prompt": "x"}, headers={"Host": host})
            assert response.status_code == 400, (path, response.text)
            assert error_of(response)["code"] == "invalid_host"
        assert client.get("/health").status_code == 200


def test_a_client_that_hangs_up_on_an_early_refusal_is_logged_not_a_traceback(
    gateway: Gateway,
) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    heads = [
        # Refused before the announced body is read: too large, a wrong key,
        # a wrong key on a Quart route.
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Length: 62914560\r\n\r\n",
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        "Authorization: Bearer wrong\r\nContent-Length: 1000\r\n\r\n",
        f"POST /v1/models HTTP/1.1\r\nHost: {host}\r\n"
        "Authorization: Bearer wrong\r\nContent-Length: 1000\r\n\r\n",
    ]
    for attempt in range(30):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(heads[attempt % 3].encode())
            sock.recv(4000)
    # The last access lines are written once the server saw the hang-ups.
    time.sleep(0.5)
    with gateway.client() as client:
        assert client.get("/v1/models").status_code == 200

    log = gateway.log()
    assert "Traceback" not in log and "Error in ASGI" not in log
    assert " outcome=failed" not in log


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/health", b""),
        ("GET", "/v1/models", b""),
        ("POST", "/v1/chat/completions", b"{}"),
        ("POST", "/v1/chat/completions", json.dumps(CHAT).encode()),
    ],
)
def test_an_answer_to_connection_close_closes_the_connection(
    gateway: Gateway, method: str, path: str, body: bytes
) -> None:
    # A client that reads until the server closes must not wait for a
    # timeout, whether a Quart route or the chat endpoint answered.
    host, port = gateway.url.removeprefix("http://").split(":")
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    # Whether the close was lost depended on the order tasks ran in.
    for _ in range(5):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(head.encode() + body)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 ")
        assert b"connection: close" in answer.lower()


AUTH = f"Authorization: Bearer {API_KEY}\r\n".encode()


def access_lines(gateway: Gateway) -> list[str]:
    """Access lines of chat requests and of requests that were not HTTP."""
    return [
        line
        for line in gateway.log().splitlines()
        if "grok2api.access: POST /v1/chat/" in line or "grok2api.access: - -" in line
    ]


@pytest.mark.parametrize(
    ("request_bytes", "status", "outcome"),
    [
        # A body that breaks off: the client hung up, nothing was answered.
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n"
            + AUTH
            + b"Content-Length: 68\r\n\r\n0123456789",
            "-",
            "client_gone",
        ),
        # A chunked body that is not HTTP: the server answers 400 for the app.
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n"
            + AUTH
            + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            "400",
            "invalid_http",
        ),
        # Part of a request head, then the client hangs up.
        (b"POST /v1/chat/completions HTTP/1.1\r\nHo", "-", "client_gone"),
    ],
    ids=["body-cut", "chunk-garbled", "head-cut"],
)
def test_a_broken_request_gets_one_access_line_that_says_what_happened(
    gateway: Gateway, request_bytes: bytes, status: str, outcome: str
) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    before = len(access_lines(gateway))
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request_bytes)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    if status == "-":
        assert answer == b""
    else:
        assert answer.startswith(f"HTTP/1.1 {status} ".encode())
        assert b'"invalid_http"' in answer
    deadline = time.monotonic() + 5
    while len(access_lines(gateway)) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    lines = access_lines(gateway)[before:]
    assert len(lines) == 1, lines
    [line] = lines
    assert f" {status} model=" in line and line.endswith(f" outcome={outcome}")
