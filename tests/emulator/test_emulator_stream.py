"""The shape of a normal chat stream."""

from __future__ import annotations

from typing import Any

from grok2api.emulator import expected_answer


def _responses(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line["result"]["response"] for line in lines[1:]]


def _tokens(lines: list[dict[str, Any]], thinking: bool) -> list[str]:
    return [
        r["token"]
        for r in _responses(lines)
        if "token" in r and r["isThinking"] is thinking
    ]


def test_stream_fast_mode_shape(emulator: Any) -> None:
    response = emulator.chat(body=emulator.body("What is the capital of France?"))
    assert response.status_code == 200
    lines = emulator.lines(response)

    conversation_id = lines[0]["result"]["conversation"]["conversationId"]
    assert len(conversation_id) == 36
    assert "userResponse" in lines[1]["result"]["response"]
    assert _tokens(lines, thinking=True) == []
    answer = _tokens(lines, thinking=False)
    assert len(answer) == 8
    assert "".join(answer) == expected_answer("What is the capital of France?")
    assert "".join(answer).startswith("You said: What is the capital of France?")

    responses = _responses(lines)
    finals = [r for r in responses if "token" in r]
    assert {r["messageTag"] for r in finals} == {"final"}
    model_response = next(r["modelResponse"] for r in responses if "modelResponse" in r)
    assert model_response["message"] == "".join(answer)
    assert {r["responseId"] for r in finals} == {model_response["responseId"]}
    hashes = [r["llmInfo"]["modelHash"] for r in responses if "llmInfo" in r]
    assert hashes == ["emu-mh-5f3a1c9e"]
    assert responses[-1]["isSoftStop"] is True
    assert "finalMetadata" in responses[-1]


def test_stream_thinking_precedes_answer(emulator: Any) -> None:
    body = emulator.body(modelMode="MODEL_MODE_GROK_4_THINKING")
    lines = emulator.lines(emulator.chat(body=body))
    kinds = [
        "thinking" if r.get("isThinking") else "answer"
        for r in _responses(lines)
        if "token" in r
    ]
    assert kinds == ["thinking"] * 4 + ["answer"] * 8
    thinking = [r for r in _responses(lines) if r.get("isThinking") and "token" in r]
    assert {r["messageTag"] for r in thinking} == {"analysis"}
    model_response = next(
        r["modelResponse"] for r in _responses(lines) if "modelResponse" in r
    )
    assert model_response["message"] == "".join(_tokens(lines, thinking=False))


def test_stream_mode_id_dialect(emulator: Any) -> None:
    body = {"message": "hi there", "modeId": "expert", "responseMetadata": {}}
    lines = emulator.lines(emulator.chat(body=body))
    assert len(_tokens(lines, thinking=True)) == 4
    assert "".join(_tokens(lines, thinking=False)) == expected_answer("hi there")

    body = {"message": "hi there", "modeId": "fast"}
    assert _tokens(emulator.lines(emulator.chat(body=body)), thinking=True) == []


def test_stream_token_counts_follow_config(emulator: Any) -> None:
    emulator.control.configure(answer_tokens=50, thinking_tokens=0, model_hash="mh-x")
    body = emulator.body("count me", modelMode="MODEL_MODE_EXPERT")
    lines = emulator.lines(emulator.chat(body=body))
    assert _tokens(lines, thinking=True) == []
    assert len(_tokens(lines, thinking=False)) == 50
    assert "".join(_tokens(lines, thinking=False)) == expected_answer("count me", 50)
    assert any(r.get("llmInfo") == {"modelHash": "mh-x"} for r in _responses(lines))


def test_stream_long_message_echoes_first_40_chars(emulator: Any) -> None:
    message = "x" * 39 + "yz and then much more text"
    lines = emulator.lines(emulator.chat(body=emulator.body(message)))
    answer = "".join(_tokens(lines, thinking=False))
    assert answer.startswith("You said: " + "x" * 39 + "y ")


def test_stream_one_token_answer_holds_whole_text(emulator: Any) -> None:
    emulator.control.configure(answer_tokens=1)
    lines = emulator.lines(emulator.chat(body=emulator.body("short")))
    assert _tokens(lines, thinking=False) == ["You said: short"]


def test_stream_line_delay_spaces_lines(emulator: Any) -> None:
    emulator.control.configure(line_delay=0.01, answer_tokens=3, thinking_tokens=0)
    with emulator.http.stream(
        "POST", emulator.CHAT, json=emulator.body(), headers=emulator.headers("tok-a")
    ) as response:
        chunks = list(response.iter_raw())
    # With a delay every line travels on its own, so a reader sees many chunks.
    assert len(chunks) >= 5
    assert b"".join(chunks).count(b"\n") == 8
