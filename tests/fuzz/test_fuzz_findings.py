"""What the fuzzer found, pinned down one request at a time.

Each request below once got a 500 or an answer outside the envelope, or was
accepted although the document calls it invalid.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, Gateway

CHAT = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def post_chat(gateway: Gateway, body: dict[str, Any]) -> httpx.Response:
    with gateway.client(API_KEY) as client:
        return client.post("/v1/chat/completions", json=body)


def user_part(part: dict[str, Any]) -> dict[str, Any]:
    return {**CHAT, "messages": [{"role": "user", "content": [part]}]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        # Unhashable values once reached a set lookup: 500.
        ({**CHAT, "reasoning_effort": {}}, "reasoning_effort"),
        ({**CHAT, "messages": [{"role": [], "content": "x"}]}, "messages[0].role"),
        # Accepted although invalid.
        ({**CHAT, "n": True}, "n"),
        ({**CHAT, "max_completion_tokens": 5, "max_tokens": "x"}, "max_tokens"),
        ({**CHAT, "thinking": {}}, "thinking"),
        ({**CHAT, "thinking": {"type": None}}, "thinking"),
        (
            {**CHAT, "stream_options": {"include_usage": "yes"}},
            "stream_options.include_usage",
        ),
        (
            {**CHAT, "messages": [{"role": "user", "content": "x", "tool_calls": [5]}]},
            "messages[0].tool_calls",
        ),
        (
            user_part({"type": "file", "file": {"file_data": 5, "url": "https://a"}}),
            "messages[0].content[0].file.file_data",
        ),
        (
            user_part({"type": "file", "file": {"file_data": "QUJD", "filename": 1}}),
            "messages[0].content[0].file.filename",
        ),
        (
            user_part(
                {"type": "input_audio", "input_audio": {"data": "", "format": 1}}
            ),
            "messages[0].content[0].input_audio.format",
        ),
    ],
)
def test_chat_refuses_what_the_document_calls_invalid(
    fuzzed_gateway: Gateway, body: dict[str, Any], param: str
) -> None:
    response = post_chat(fuzzed_gateway, body)
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == param


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", "/v1/admin/keys", {"limits": {"models": {}}}, "limits.models"),
        ("POST", "/v1/admin/keys", [], "body"),
        ("POST", "/v1/admin/tokens/refresh", {"ids": {}}, "ids"),
        ("POST", "/v1/admin/tokens/refresh", [], "body"),
    ],
)
def test_admin_refuses_what_the_document_calls_invalid(
    fuzzed_gateway: Gateway, method: str, path: str, body: Any, param: str
) -> None:
    with fuzzed_gateway.admin() as admin:
        response = admin.request(method, path, json=body)
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == param


def test_token_import_nested_too_deep_is_a_400(fuzzed_gateway: Gateway) -> None:
    # Text that looks like JSON is parsed as JSON, past Python's recursion limit.
    with fuzzed_gateway.admin() as admin:
        response = admin.post(
            "/v1/admin/tokens",
            content="[" * 5000 + "]" * 5000,
            headers={"Content-Type": "text/plain"},
        )
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == "body"


def test_key_creation_without_a_body_still_works(fuzzed_gateway: Gateway) -> None:
    with fuzzed_gateway.admin() as admin:
        response = admin.post("/v1/admin/keys")
    assert response.status_code == 201, response.text
    assert response.json()["items"][0]["name"] == "key"


def test_method_not_allowed_lists_the_allowed_methods(
    fuzzed_gateway: Gateway,
) -> None:
    response = httpx.put(f"{fuzzed_gateway.url}/health")
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers.get("allow", "").split(",")}
    assert allowed == {"GET", "HEAD", "OPTIONS"}


def test_a_doubled_slash_is_an_error_envelope(fuzzed_gateway: Gateway) -> None:
    response = httpx.get(
        f"{fuzzed_gateway.url}/v1//models",
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 404
    error_of(response)


def test_an_image_host_with_an_empty_label_is_a_400(fuzzed_gateway: Gateway) -> None:
    body = user_part({"type": "image_url", "image_url": {"url": "http://a..b/x.png"}})
    response = post_chat(fuzzed_gateway, body)
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == "messages[0].content[0]"
