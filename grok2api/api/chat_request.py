"""Parsing and validating a ``POST /v1/chat/completions`` body.

The body becomes a typed :class:`ChatRequest` or an :class:`ApiError` with
``param`` naming the offending field. Fields that Grok has no use for are
accepted and ignored, as strict OpenAI clients send many of them.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import attrs

from grok2api.errors import ApiError

__all__ = ["ChatMessage", "ChatRequest", "MediaPart", "parse_chat_request"]

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh", "max"}


@attrs.frozen
class MediaPart:
    """An image or file a message carries; ``param`` locates it for errors."""

    param: str
    kind: str  # "image" or "file"
    url: str | None = None
    data: str | None = None  # base64 without a data: prefix
    mime_type: str | None = None
    filename: str | None = None


@attrs.frozen
class ChatMessage:
    role: str
    text: str
    media: tuple[MediaPart, ...] = ()


@attrs.frozen
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    stream: bool = False
    include_usage: bool = False
    #: None: the model/config default; True/False: the client asked.
    show_thinking: bool | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None


def _bad(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def parse_chat_request(body: Any, *, default_stream: bool = False) -> ChatRequest:
    """Validate a decoded JSON body.

    Raises:
        ApiError: 400 with ``param`` set to the first invalid field.
    """
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body", "invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad(
            "'model' is required and must be a non-empty string.",
            "model",
            "missing_required_parameter",
        )
    messages = _parse_messages(body.get("messages"))

    stream = body.get("stream", default_stream)
    if stream is None:
        stream = default_stream
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("'stream_options' must be an object.", "stream_options")
        include_usage = options.get("include_usage")
        if not isinstance(include_usage, bool | None):
            raise _bad(
                "'stream_options.include_usage' must be a boolean.",
                "stream_options.include_usage",
            )

    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise _bad(
            "Only n=1 is supported: the upstream produces one answer per request.",
            "n",
            "unsupported_value",
        )

    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage is True,
        show_thinking=_parse_thinking(body),
        max_tokens=_parse_max_tokens(body),
        stop=_parse_stop(body.get("stop")),
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        reasoning_effort=body.get("reasoning_effort"),
    )


def _parse_thinking(body: dict[str, Any]) -> bool | None:
    effort = body.get("reasoning_effort")
    if effort is not None and not (isinstance(effort, str) and effort in _EFFORTS):
        raise _bad(
            f"'reasoning_effort' must be one of {sorted(_EFFORTS)}.", "reasoning_effort"
        )
    thinking = body.get("thinking")
    if isinstance(thinking, bool):
        return thinking
    # Anthropic-style {"type": "enabled"} objects are common in clients.
    switch = thinking.get("type") if isinstance(thinking, dict) else thinking
    if switch in ("enabled", "disabled"):
        return switch == "enabled"
    if thinking is not None:
        raise _bad("'thinking' must be 'enabled', 'disabled' or null.", "thinking")
    if effort == "none":
        return False
    return None


def _parse_max_tokens(body: dict[str, Any]) -> int | None:
    """``max_completion_tokens``, else the legacy ``max_tokens``; both are
    checked, so a bad value is reported whichever one wins."""
    limits = []
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"'{name}' must be a positive integer.", name)
        limits.append(value)
    return limits[0] if limits else None


def _parse_stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if (
        not isinstance(stop, list)
        or len(stop) > 4
        or not all(isinstance(s, str) for s in stop)
    ):
        raise _bad("'stop' must be a string or a list of up to 4 strings.", "stop")
    return tuple(s for s in stop if s)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not low <= value <= high
    ):
        raise _bad(f"'{name}' must be a number from {low} to {high}.", name)
    return float(value)


def _parse_messages(raw: Any) -> tuple[ChatMessage, ...]:
    if not isinstance(raw, list) or not raw:
        raise _bad(
            "'messages' must be a non-empty array.",
            "messages",
            "missing_required_parameter",
        )
    messages: list[ChatMessage] = []
    for i, item in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(item, dict):
            raise _bad("Each message must be an object.", param)
        role = item.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise _bad(f"'role' must be one of {sorted(_ROLES)}.", f"{param}.role")
        role = (
            {"developer": "system", "function": "tool"}[role]
            if role in ("developer", "function")
            else role
        )
        if role in ("user", "tool") and item.get("content") is None:
            raise _bad(
                f"A {role} message needs 'content'.",
                f"{param}.content",
                "missing_required_parameter",
            )
        text, media = _parse_content(item.get("content"), f"{param}.content", role)
        text = _with_tool_calls(text, item, param)
        if role in ("system", "assistant") and not text.strip() and not media:
            continue
        messages.append(ChatMessage(role, text, tuple(media)))
    if not messages:
        raise _bad("'messages' has no message with content.", "messages")
    # Only empty text left would still spend a conversation upstream.
    if not any(_visible(message.text) or message.media for message in messages):
        raise _bad(
            "'messages' has no message with content.",
            f"messages[{len(raw) - 1}].content",
        )
    return tuple(messages)


def _visible(text: str) -> bool:
    # Spaces and format characters such as U+200B show nothing.
    return any(
        not char.isspace() and unicodedata.category(char) != "Cf" for char in text
    )


def _parse_content(content: Any, param: str, role: str) -> tuple[str, list[MediaPart]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if isinstance(content, dict):
        content = [content]
        single = True
    else:
        single = False
    if not isinstance(content, list):
        raise _bad(
            "'content' must be a string, an array of parts or a part object.", param
        )
    texts: list[str] = []
    media: list[MediaPart] = []
    for j, part in enumerate(content):
        part_param = param if single else f"{param}[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad("Each content part must be an object with a 'type'.", part_param)
        kind = part["type"]
        if kind in ("text", "input_text", "refusal"):
            field = "refusal" if kind == "refusal" else "text"
            value = part.get(field)
            if not isinstance(value, str):
                raise _bad(
                    f"A '{kind}' part needs a string '{field}'.",
                    part_param,
                )
            texts.append(value)
        elif kind == "image_url":
            media.append(_image_part(part.get("image_url"), part_param))
        elif kind == "file":
            media.append(_file_part(part.get("file"), part_param))
        elif kind == "input_audio":
            media.append(_audio_part(part.get("input_audio"), part_param))
        else:
            raise _bad(f"Unsupported content part type {kind!r}.", f"{part_param}.type")
    if media and role != "user":
        raise _bad("Images and files are accepted in user messages only.", param)
    return "\n".join(texts), media


def _image_part(value: Any, param: str) -> MediaPart:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise _bad("An 'image_url' part needs a 'url'.", param)
    return MediaPart(param, "image", url=url)


def _optional_text(value: dict[str, Any], name: str, param: str) -> str | None:
    text = value.get(name)
    if not isinstance(text, str | None):
        raise _bad(f"'{name}' must be a string.", f"{param}.{name}")
    return text


def _file_part(value: Any, param: str) -> MediaPart:
    if not isinstance(value, dict):
        raise _bad("A 'file' part needs a 'file' object.", param)
    filename = _optional_text(value, "filename", f"{param}.file")
    data = _optional_text(value, "file_data", f"{param}.file")
    url = _optional_text(value, "url", f"{param}.file")
    if data:
        if data.startswith("data:"):
            return MediaPart(param, "file", url=data, filename=filename)
        return MediaPart(param, "file", data=data, filename=filename)
    if url:
        return MediaPart(param, "file", url=url, filename=filename)
    raise _bad(
        "A 'file' part needs 'file_data' (base64 or a data: URL) or a 'url'.", param
    )


def _audio_part(value: Any, param: str) -> MediaPart:
    if not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise _bad("An 'input_audio' part needs base64 'data'.", param)
    audio_format = _optional_text(value, "format", f"{param}.input_audio") or "wav"
    return MediaPart(
        param,
        "file",
        data=value["data"],
        mime_type=f"audio/{audio_format}",
        filename=f"audio.{audio_format}",
    )


def _with_tool_calls(text: str, message: dict[str, Any], param: str) -> str:
    """Tool calls and results have no upstream field; they travel as text."""
    calls = message.get("tool_calls")
    if calls is None:
        return text
    if not isinstance(calls, list):
        raise _bad("'tool_calls' must be an array.", f"{param}.tool_calls")
    if not all(isinstance(call, dict) for call in calls):
        raise _bad("Each tool call must be an object.", f"{param}.tool_calls")
    lines = [text] if text else []
    for call in calls:
        function = call.get("function")
        if isinstance(function, dict):
            lines.append(
                f"[called {function.get('name')}({function.get('arguments', '')})]"
            )
    return "\n".join(lines)
