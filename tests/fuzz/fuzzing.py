"""What the fuzz tests share: the schemathesis setup and the checks every
response must pass besides schemathesis's own.

Schemathesis generates requests from ``openapi_document()`` (valid ones and,
on purpose, invalid ones) and checks each answer against the document. On top
of that every answer must keep the gateway's promises: no 5xx, every error in
the envelope and nothing else, no Python traceback anywhere, and a stream
that ends with ``[DONE]`` and carries any failure as an envelope event.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import CheckFunction

from grok2api.api.openapi import openapi_document
from tests.conftest import Gateway

#: Examples per operation in the fuzzing phase; the coverage phase adds a
#: fixed set of boundary and type-mutation cases per operation on top. The
#: suite runs a fixed seed; ``FUZZ_SEED`` and ``FUZZ_EXAMPLES`` explore
#: further (a failure prints the request that reproduces it).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
SEED = int(os.environ.get("FUZZ_SEED", "20260101"))

_TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+"
)
_ENVELOPE_KEYS = {"message", "type", "param", "code"}


def fuzzed_schema(*tags: str) -> Any:
    """The document's operations with one of ``tags``, set up to fuzz
    reproducibly: a fixed seed, no example database, positive and negative
    cases, and no invented credentials (the tests send real ones)."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # Generation is timed in wall-clock seconds, which a busy machine
            # stretches; the other health checks point at the schemas.
            "suppress-health-check": ["too_slow"],
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
                "with-security-parameters": False,
            },
            "phases": {"stateful": {"enabled": False}},
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                "ignored_auth": {"enabled": False},
                "allow_header_conformance": {"enabled": False},
                "negative_data_rejection": {
                    "expected-statuses": ["400", "401", "403", "404", "405", "413"]
                },
            },
        }
    )
    return schemathesis.openapi.from_dict(openapi_document(), config=config).include(
        tag=list(tags)
    )


def _body(response: Response) -> str:
    return response.content.decode("utf-8", errors="replace")


def _is_error_envelope(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) != {"error"}:
        return False
    error = value["error"]
    return (
        isinstance(error, dict)
        and set(error) == _ENVELOPE_KEYS
        and isinstance(error["message"], str)
        and isinstance(error["type"], str)
        and isinstance(error["param"], str | None)
        and isinstance(error["code"], str | None)
    )


def no_server_error(gateway: Gateway) -> CheckFunction:
    """No 5xx; a failure quotes the gateway's log, which has the traceback."""

    def no_server_error(ctx: CheckContext, response: Response, case: Case) -> None:
        if response.status_code >= 500:
            log = gateway.log()
            start = log.rfind("Traceback (most recent call last)")
            tail = log[start:] if start >= 0 else log[-2000:]
            raise AssertionError(
                f"{case.method} {case.formatted_path} answered "
                f"{response.status_code}: {_body(response)[:500]}\n"
                f"gateway log:\n{tail[-4000:]}"
            )

    return no_server_error


def error_envelope(ctx: CheckContext, response: Response, case: Case) -> None:
    """Every error answer is exactly the envelope, as JSON."""
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), (
        f"a {response.status_code} answer is {content_type!r}, not JSON: "
        f"{_body(response)[:300]}"
    )
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"a {response.status_code} answer is not JSON") from exc
    assert _is_error_envelope(body), (
        f"a {response.status_code} answer is not the error envelope: {body!r}"[:500]
    )


def no_traceback(ctx: CheckContext, response: Response, case: Case) -> None:
    found = _TRACEBACK.search(_body(response))
    assert found is None, f"the answer shows a traceback: {found.group(0)!r}"


def complete_stream(ctx: CheckContext, response: Response, case: Case) -> None:
    """A streamed answer ends with ``[DONE]``; an error event inside it is
    the envelope and never a server error (the emulator stays healthy)."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code != 200 or not content_type.startswith("text/event-stream"):
        return
    events = [
        line.removeprefix("data: ")
        for line in _body(response).splitlines()
        if line.startswith("data: ")
    ]
    assert events and events[-1] == "[DONE]", f"the stream did not end: {events!r}"
    for event in events[:-1]:
        chunk = json.loads(event)
        if "error" in chunk:
            assert _is_error_envelope(chunk), f"a bad error event: {chunk!r}"
            assert chunk["error"]["type"] != "server_error", (
                f"the stream failed: {chunk!r}"
            )


def gateway_checks(gateway: Gateway) -> list[Callable[..., None]]:
    return [no_server_error(gateway), error_envelope, no_traceback, complete_stream]
