"""The serving floor: the gateway's server stack answering without working.

``python -m bench.floor --port N --answers FILE`` serves one ASGI app the
way ``grok2api serve`` serves the gateway (Hypercorn's trio worker, the
gateway's HTTP/1.1 protocol, the same Hypercorn settings). Every request has
its body read and gets, in reply, the bytes a real gateway answered to the
same request, captured by the benchmark beforehand: a JSON completion, or
the SSE stream sent as one piece. Nothing else happens: no auth, no
upstream call, no storage, no log line.

Its CPU per request is what taking a request and writing the answer cost on
this machine, the part of the gateway's figure that no change to the
gateway's own code can remove.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio

from grok2api.cli.serve import _serve_one, hypercorn_config
from grok2api.config import ServerOptions

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def _lifespan(receive: Any, send: Any) -> None:
    # Nothing to set up or tear down: every phase completes at once.
    phase = ""
    while phase != "shutdown":
        phase = (await receive())["type"].rpartition(".")[2]
        await send({"type": f"lifespan.{phase}.complete"})


def _answering(non_stream: bytes, stream: bytes) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if b'"stream": true' in body:
            await send(
                {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS}
            )
            await send({"type": "http.response.body", "body": stream})
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(non_stream)),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": non_stream})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.floor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--answers",
        type=Path,
        required=True,
        help='JSON {"non_stream": text, "stream": text}: the bytes to answer',
    )
    args = parser.parse_args(argv)
    answers = json.loads(args.answers.read_text())
    options = ServerOptions(host="127.0.0.1", port=args.port, workers=1)
    config = hypercorn_config(options, grace=1.0)
    app = _answering(answers["non_stream"].encode(), answers["stream"].encode())
    trio.run(partial(_serve_one, app, config, trio.sleep_forever))
    return 0


if __name__ == "__main__":
    sys.exit(main())
