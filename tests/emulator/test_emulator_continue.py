"""Replies to an existing conversation: ``conversations/<id>/responses``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from grok2api.emulator import expected_answer


def _responses_path(conversation_id: str) -> str:
    return f"/rest/app-chat/conversations/{conversation_id}/responses"


def _open(emulator: Any, token: str = "tok-a") -> tuple[str, str]:
    """Start a conversation; return its id and the model answer's id."""
    lines = emulator.lines(emulator.chat(token, body=emulator.body("first turn")))
    conversation_id = lines[0]["result"]["conversation"]["conversationId"]
    final = next(
        line["result"]["response"]["modelResponse"]
        for line in lines
        if "modelResponse" in line["result"].get("response", {})
    )
    return conversation_id, final["responseId"]


def _reply(
    emulator: Any,
    conversation_id: str,
    parent: str | None,
    message: str = "second turn",
    token: str = "tok-a",
) -> httpx.Response:
    body = emulator.body(message)
    if parent is not None:
        body["parentResponseId"] = parent
    return emulator.http.post(
        _responses_path(conversation_id), json=body, headers=emulator.headers(token)
    )


def _answer(lines: list[dict[str, Any]]) -> str:
    return "".join(
        line["result"]["response"]["token"]
        for line in lines
        if "token" in line.get("result", {}).get("response", {})
    )


def test_reply_streams_an_answer_in_the_same_conversation(emulator: Any) -> None:
    conversation_id, parent = _open(emulator)
    response = _reply(emulator, conversation_id, parent)

    assert response.status_code == 200
    lines = emulator.lines(response)
    assert all("conversation" not in line["result"] for line in lines)
    assert _answer(lines) == expected_answer("second turn")
    assert lines[-1]["result"]["response"]["isSoftStop"] is True
    assert emulator.control.account("tok-a")["remaining"] == 8

    first, second = emulator.control.requests(settled=True)
    assert second["path"] == _responses_path(conversation_id)
    assert second["body"]["parentResponseId"] == parent
    assert second["body"]["message"] == "second turn"
    assert (second["status"], second["outcome"], second["charged"]) == (
        200,
        "completed",
        1,
    )
    assert second["conversation_id"] == first["conversation_id"] == conversation_id
    assert second["response_id"] not in (first["response_id"], None)


def test_reply_answer_can_be_replied_to(emulator: Any) -> None:
    conversation_id, parent = _open(emulator)
    _reply(emulator, conversation_id, parent)
    second = emulator.control.requests()[-1]["response_id"]

    assert _reply(emulator, conversation_id, second, "third").status_code == 200
    (known,) = emulator.control.conversations()
    assert known["conversation_id"] == conversation_id
    assert {parent, second} <= set(known["response_ids"])


def test_reply_to_unknown_conversation_is_404(emulator: Any) -> None:
    _open(emulator)
    response = _reply(emulator, "no-such-conversation", "r-1")

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "conversation not found"
    assert emulator.control.account("tok-a")["remaining"] == 9
    record = emulator.control.requests()[-1]
    assert (record["outcome"], record["reason"]) == ("rejected", "not-found")


def test_reply_to_another_accounts_conversation_is_404(emulator: Any) -> None:
    emulator.control.add_account("tok-b")
    conversation_id, parent = _open(emulator, "tok-a")

    response = _reply(emulator, conversation_id, parent, token="tok-b")

    assert response.status_code == 404
    assert emulator.control.account("tok-b")["remaining"] == 80


@pytest.mark.parametrize("parent", [None, "r-from-elsewhere", 7])
def test_reply_needs_a_parent_response_of_the_conversation(
    emulator: Any, parent: Any
) -> None:
    conversation_id, _ = _open(emulator)
    other_id, other_parent = _open(emulator)

    response = _reply(
        emulator,
        conversation_id,
        other_parent if parent == "r-from-elsewhere" else parent,
    )

    assert other_id != conversation_id
    assert response.status_code == 400
    assert "parentResponseId" in response.json()["error"]["message"]
    assert emulator.control.account("tok-a")["remaining"] == 8


def test_forgotten_conversation_is_404(emulator: Any) -> None:
    conversation_id, parent = _open(emulator)
    emulator.control.forget_conversations(conversation_id)

    assert _reply(emulator, conversation_id, parent).status_code == 404
    with pytest.raises(httpx.HTTPStatusError):
        emulator.control.forget_conversations(conversation_id)


def test_conversation_limit_forgets_the_least_recently_used(emulator: Any) -> None:
    emulator.control.configure(conversation_limit=2)
    oldest, oldest_parent = _open(emulator)
    used, used_parent = _open(emulator)
    assert _reply(emulator, oldest, oldest_parent).status_code == 200
    _open(emulator)

    assert _reply(emulator, used, used_parent).status_code == 404
    assert _reply(emulator, oldest, oldest_parent).status_code == 200
    assert len(emulator.control.conversations()) == 2


def test_reset_forgets_conversations(emulator: Any) -> None:
    _open(emulator)
    emulator.control.forget_conversations()
    assert emulator.control.conversations() == []
    _open(emulator)
    emulator.control.reset()
    assert emulator.control.conversations() == []


def test_continue_fault_hits_replies_only(emulator: Any) -> None:
    emulator.control.fault("500", endpoint="continue", times=None)
    conversation_id, parent = _open(emulator)

    response = _reply(emulator, conversation_id, parent)

    assert response.status_code == 500
    assert emulator.control.requests()[-1]["fault"] == "500"
    assert emulator.chat().status_code == 200


def test_chat_fault_leaves_replies_alone(emulator: Any) -> None:
    conversation_id, parent = _open(emulator)
    emulator.control.fault("503")

    assert _reply(emulator, conversation_id, parent).status_code == 200
    assert emulator.chat().status_code == 503


def test_continue_stream_fault_shapes_the_reply(emulator: Any) -> None:
    conversation_id, parent = _open(emulator)
    emulator.control.fault("inband_error", endpoint="continue")

    lines = emulator.lines(_reply(emulator, conversation_id, parent))

    assert lines[-1]["error"]["message"] == "Too many requests"
    assert _answer(lines) == ""


def test_reply_without_quota_is_429(emulator: Any) -> None:
    conversation_id, parent = _open(emulator)
    emulator.control.add_account("tok-a", quota=10, remaining=0)

    response = _reply(emulator, conversation_id, parent)

    assert response.status_code == 429
    assert response.json()["remainingQueries"] == 0


def test_stream_faults_reject_other_endpoints(emulator: Any) -> None:
    with pytest.raises(httpx.HTTPStatusError) as raised:
        emulator.control.fault("cut", endpoint="upload")
    assert "chat and continue" in raised.value.response.json()["error"]
