"""The Imagine WebSocket client against the emulator's socket: how rounds
end, how frames are classified, and how refusals and error frames are
classified."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from wsproto.events import Ping

from grok2api.errors import (
    EgressBlocked,
    TokenRejected,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from grok2api.upstream import UpstreamClient, UpstreamOptions
from grok2api.upstream.imagine_ws import (
    ImageStage,
    ImagineFrame,
    ImagineLimits,
    ImagineProgress,
    ImagineRequest,
    _Socket,
    generate_over_socket,
)
from tests.conftest import Emulator

TOKEN = "imagine-owner-0123456789"
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICK = ImagineLimits(settle_seconds=0.3, idle_timeout=2.0, blocked_seconds=1.0)


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[UpstreamClient]:
    emulator.control.add_account(TOKEN)
    upstream = UpstreamClient(
        UpstreamOptions(base_url=emulator.url, assets_url=emulator.url)
    )
    yield upstream
    await upstream.aclose()


async def test_imagine_reference_round_settles_after_its_last_final(
    client: UpstreamClient, emulator: Emulator
) -> None:
    emulator.control.configure(imagine_format="reference", imagine_slots=3)
    frames: list[ImagineFrame] = []

    async def seen(frame: ImagineFrame) -> None:
        frames.append(frame)

    started = trio.current_time()
    result = await generate_over_socket(
        client, TOKEN, ImagineRequest("boats"), 5, QUICK, on_frame=seen
    )
    # Three slots only: no status frames say so, so the round ends on the
    # silence after the last final.
    assert trio.current_time() - started >= QUICK.settle_seconds
    assert [image.slot for image in result.images] == [0, 1, 2]
    assert all(image.data.startswith(JPEG_MAGIC) for image in result.images)
    assert all(image.url.endswith(".jpg") for image in result.images)
    stages = [(frame.slot, frame.stage) for frame in frames]
    assert stages[:3] == [(slot, ImageStage.PREVIEW) for slot in range(3)]
    assert stages[3:6] == [(slot, ImageStage.MEDIUM) for slot in range(3)]
    assert not result.moderated and not result.blocked


async def test_imagine_later_round_ends_when_its_slots_complete(
    client: UpstreamClient, emulator: Emulator
) -> None:
    emulator.control.configure(imagine_slots=2)
    progress = ImagineProgress()
    patient = ImagineLimits(settle_seconds=30.0)
    # Long before the silence after the finals could end it.
    with trio.fail_after(10):
        result = await generate_over_socket(
            client, TOKEN, ImagineRequest("boats"), 6, patient, progress=progress
        )
    assert len(result.images) == 2
    assert all(image.data.startswith(PNG_MAGIC) for image in result.images)
    assert progress.accepted and progress.frames == 2 * 2 + 2 * 3


async def test_imagine_pro_asks_for_fewer_slots(
    client: UpstreamClient, emulator: Emulator
) -> None:
    request = ImagineRequest("boats", aspect_ratio="9:16", enable_pro=True)
    result = await generate_over_socket(client, TOKEN, request, 6, QUICK)
    assert len(result.images) == 4
    (record,) = emulator.control.requests(path="/ws/imagine/listen", settled=True)
    properties = record["body"]["item"]["content"][0]["properties"]
    assert properties["aspect_ratio"] == "9:16" and properties["enable_pro"] is True


async def test_imagine_refusals_and_error_frames_are_classified(
    client: UpstreamClient, emulator: Emulator
) -> None:
    request = ImagineRequest("boats")
    emulator.control.fault("403_empty", endpoint="imagine")
    with pytest.raises(EgressBlocked) as refused:
        await generate_over_socket(client, TOKEN, request, 1, QUICK)
    assert refused.value.status == 403
    with pytest.raises(TokenRejected):
        await generate_over_socket(client, "imagine-unknown-token", request, 1, QUICK)
    emulator.control.fault("ws_error", endpoint="imagine", message="boom")
    progress = ImagineProgress()
    with pytest.raises(UpstreamUnavailable) as failed:
        await generate_over_socket(client, TOKEN, request, 1, QUICK, progress=progress)
    assert "internal_error: boom" in str(failed.value)
    assert failed.value.charged and progress.accepted


async def test_imagine_empty_account_gets_a_rate_limit_frame(
    client: UpstreamClient, emulator: Emulator
) -> None:
    emulator.control.add_account(TOKEN, remaining=0)
    with pytest.raises(UpstreamRateLimited):
        await generate_over_socket(client, TOKEN, ImagineRequest("x"), 1, QUICK)


async def test_imagine_moderated_and_blocked_rounds_have_no_images(
    client: UpstreamClient, emulator: Emulator
) -> None:
    request = ImagineRequest("forbidden")
    emulator.control.fault("ws_moderated", endpoint="imagine")
    moderated = await generate_over_socket(client, TOKEN, request, 2, QUICK)
    assert (moderated.images, moderated.moderated, moderated.blocked) == ((), 6, False)
    emulator.control.fault("ws_blocked", endpoint="imagine", seconds=20)
    started = trio.current_time()
    blocked = await generate_over_socket(client, TOKEN, request, 2, QUICK)
    assert (blocked.images, blocked.moderated, blocked.blocked) == ((), 0, True)
    assert trio.current_time() - started < QUICK.blocked_seconds + 2


async def test_imagine_pings_while_the_round_runs(
    client: UpstreamClient, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.control.configure(imagine_slots=2, line_delay=0.1)
    sent: list[object] = []
    original = _Socket._send

    async def recording(socket: _Socket, event: object) -> None:
        sent.append(event)
        await original(socket, event)

    monkeypatch.setattr(_Socket, "_send", recording)
    limits = ImagineLimits(ping_interval=0.05)
    result = await generate_over_socket(client, TOKEN, ImagineRequest("p"), 2, limits)
    assert len(result.images) == 2
    assert sum(isinstance(event, Ping) for event in sent) >= 5
