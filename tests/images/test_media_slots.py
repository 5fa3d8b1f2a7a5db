"""``performance.media_max_concurrent``: a worker runs at most that many image
and video generation calls at once; the next waits, and gets a clear 503
when no slot frees up within ``timeout.stream_first_timeout``."""

from __future__ import annotations

import threading

import openai
import pytest

from tests.conftest import API_KEY, Emulator, Gateway, GatewayFactory

CHAT_PATH = "/rest/app-chat/conversations/new"


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api, api_key=API_KEY, max_retries=0)


@pytest.fixture
def one_slot(gateway_factory: GatewayFactory, emulator: Emulator) -> Gateway:
    for token in ("tok-a", "tok-b"):
        emulator.control.add_account(token)
    return gateway_factory(
        ["tok-a", "tok-b"],
        GROK2API_PERFORMANCE_MEDIA_MAX_CONCURRENT="1",
        GROK2API_TIMEOUT_STREAM_FIRST_TIMEOUT="1.5",
        GROK2API_IMAGE_IMAGE_WS="false",
    )


def test_a_generation_beyond_the_slots_waits_then_gets_a_503(
    one_slot: Gateway, emulator: Emulator
) -> None:
    # A dozen lines 0.25 s apart keep the video's slot for about 3 s, and its
    # first progress frame still comes within the 1.5 s first-frame timeout.
    emulator.control.configure(line_delay=0.25)
    finished: list[str] = []

    def make_video() -> None:
        with sdk(one_slot) as client:
            answer = client.chat.completions.create(
                model="grok-imagine-1.0-video",
                messages=[{"role": "user", "content": "slow waves"}],
            )
        finished.append(answer.choices[0].message.content or "")

    video = threading.Thread(target=make_video)
    video.start()
    emulator.control.requests(path=CHAT_PATH, min_count=1, timeout=10)
    with sdk(one_slot) as client, pytest.raises(openai.APIStatusError) as busy:
        client.images.generate(model="grok-imagine-1.0", prompt="an owl")
    assert busy.value.status_code == 503
    error = busy.value.body
    assert isinstance(error, dict)
    assert error["code"] == "media_capacity_exceeded"
    assert "performance.media_max_concurrent" in error["message"]
    # The refused request never reached the upstream.
    assert len(emulator.control.requests(path=CHAT_PATH)) == 1
    video.join(timeout=30)
    assert finished and "<video" in finished[0]

    emulator.control.configure(line_delay=0.0)
    with sdk(one_slot) as client:
        result = client.images.generate(model="grok-imagine-1.0", prompt="an owl")
    assert len(result.data) == 1
