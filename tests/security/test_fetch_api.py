"""The fetch guard seen through the chat API of a running gateway: a refused
``image_url`` is a 400 naming the part, and nothing in it tells the client
where the URL pointed."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory
from tests.security.conftest import MediaServer, Reply, redirect

PARAM = "messages[0].content[1]"
REFUSED = {
    "message": f"The URL at {PARAM} could not be fetched.",
    "type": "invalid_request_error",
    "param": PARAM,
    "code": "invalid_media",
}


def chat_with_image(url: str) -> dict[str, Any]:
    return {
        "model": "grok-4",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    }


async def post_chat(gateway: Gateway, url: str) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=gateway.url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    ) as client:
        return await client.post("/v1/chat/completions", json=chat_with_image(url))


async def test_chat_image_url_at_loopback_is_a_400_that_hides_the_address(
    gateway: Gateway, emulator: Emulator, media_server: MediaServer
) -> None:
    media_server.routes["/secret.png"] = Reply(200, [], b"secret")
    port = media_server.port
    for url in (
        f"http://127.0.0.1:{port}/secret.png",
        f"http://localhost:{port}/secret.png",
        f"http://2130706433:{port}/secret.png",
        f"http://0x7f.0.0.1:{port}/secret.png",
        f"http://[::ffff:127.0.0.1]:{port}/secret.png",
    ):
        response = await post_chat(gateway, url)
        assert response.status_code == 400, url
        assert response.json() == {"error": REFUSED}, url
        assert str(port) not in response.text
    assert media_server.received == []
    assert emulator.control.requests(path="/rest/app-chat/conversations/new") == []
    assert "media fetch refused" in gateway.log()


async def test_chat_allow_listed_host_may_not_redirect_to_another_internal_one(
    gateway_factory: GatewayFactory, emulator: Emulator, media_server: MediaServer
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(
        ["tok-a"], GROK2API_SECURITY_MEDIA_FETCH_ALLOW_HOSTS="localhost"
    )
    port = media_server.port
    media_server.routes["/hop"] = redirect(f"http://127.0.0.1:{port}/secret.png")
    media_server.routes["/secret.png"] = Reply(200, [], b"secret")

    response = await post_chat(gateway, f"http://localhost:{port}/hop")
    assert response.status_code == 400
    assert response.json() == {"error": REFUSED}
    assert media_server.paths() == ["/hop"]
    assert emulator.control.requests(path="/rest/app-chat/conversations/new") == []
