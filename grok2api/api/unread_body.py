"""Close the connection after answering a request whose body had not all
arrived.

Refusals (401, 403, 404, 429, 413) are answered before the body is read.
If the client is still sending it, the rest would be read as the start of
the next request on a keep-alive connection, and Hypercorn then waits on a
connection that never becomes idle: the client's next request (the OpenAI
SDK's retry, for one) hangs. Answering with ``Connection: close`` in that
case makes the client open a fresh connection instead.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CloseWhenBodyUnread"]


def _may_have_body(scope: dict[str, Any]) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
    return False


class CloseWhenBodyUnread:
    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _may_have_body(scope):
            await self._app(scope, receive, send)
            return
        body_done = False

        async def watching_receive() -> dict[str, Any]:
            nonlocal body_done
            message: dict[str, Any] = await receive()
            if message["type"] == "http.disconnect" or not message.get(
                "more_body", False
            ):
                body_done = True
            return message

        async def closing_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and not body_done:
                headers = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self._app(scope, watching_receive, closing_send)
