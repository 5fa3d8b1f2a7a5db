"""The upstream client's media REST calls against the emulator: media posts,
video upscale, the account's asset list and deletion, voice tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from grok2api.emulator.assets import EmulatorAssets
from grok2api.errors import EgressBlocked, TokenRejected, UpstreamError
from grok2api.upstream import UpstreamClient, UpstreamOptions
from tests.conftest import Emulator

OWNER = "media-owner-0123456789"
OTHER = "media-other-0123456789"


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[UpstreamClient]:
    emulator.control.add_account(OWNER)
    emulator.control.add_account(OTHER)
    options = UpstreamOptions(
        base_url=emulator.url,
        assets_url=emulator.url,
        transport="httpx",
        request_timeout=5.0,
    )
    upstream = UpstreamClient(options)
    try:
        yield upstream
    finally:
        await upstream.aclose()


def put_assets(emulator: Emulator, token: str, count: int, kind: str = "image") -> None:
    with EmulatorAssets(emulator.url) as assets:
        for index in range(count):
            if kind == "video":
                path = f"users/u/generated/v{index}/generated_video.mp4"
                assets.put(token, path, b"\x00\x00\x00\x18ftypmp42", "video/mp4")
            else:
                path = f"users/u/generated/i{index}-{token.split('-')[1]}/image.png"
                assets.put(token, path, b"\x89PNG\r\n\x1a\n", "image/png")


async def test_media_posts_of_both_kinds_return_their_ids(
    client: UpstreamClient, emulator: Emulator
) -> None:
    video_post = await client.create_media_post(
        OWNER, "MEDIA_POST_TYPE_VIDEO", prompt="a cat surfing"
    )
    image_post = await client.create_media_post(
        OWNER, "MEDIA_POST_TYPE_IMAGE", media_url=emulator.url + "/users/u/f/content"
    )
    assert video_post != image_post
    bodies = [
        record["body"]
        for record in emulator.control.requests(path="/rest/media/post/create")
    ]
    assert bodies == [
        {"mediaType": "MEDIA_POST_TYPE_VIDEO", "prompt": "a cat surfing"},
        {
            "mediaType": "MEDIA_POST_TYPE_IMAGE",
            "mediaUrl": emulator.url + "/users/u/f/content",
        },
    ]


async def test_media_post_refusals_are_classified(
    client: UpstreamClient, emulator: Emulator
) -> None:
    with pytest.raises(ValueError, match="unknown media post type"):
        await client.create_media_post(OWNER, "MEDIA_POST_TYPE_AUDIO")
    emulator.control.fault("401", token=OWNER, endpoint="media-post")
    with pytest.raises(TokenRejected):
        await client.create_media_post(OWNER, "MEDIA_POST_TYPE_VIDEO", prompt="x")
    emulator.control.fault("403_cloudflare", token=OWNER, endpoint="assets-list")
    with pytest.raises(EgressBlocked):
        await client.list_assets(OWNER)


async def test_upscale_returns_an_absolute_hd_url_of_the_same_account(
    client: UpstreamClient, emulator: Emulator
) -> None:
    put_assets(emulator, OWNER, 1, kind="video")
    url = await client.upscale_video(OWNER, "v0")
    assert url == emulator.url + "/users/u/generated/v0/generated_video_hd.mp4"
    # Another account cannot upscale the owner's video.
    with pytest.raises(UpstreamError):
        await client.upscale_video(OTHER, "v0")


async def test_asset_list_pages_through_only_the_accounts_assets(
    client: UpstreamClient, emulator: Emulator
) -> None:
    put_assets(emulator, OWNER, 7)
    put_assets(emulator, OTHER, 2)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = await client.list_assets(OWNER, page_token=token, page_size=3)
        pages += 1
        seen.extend(asset.asset_id for asset in page.assets)
        assert all("key" in asset.details for asset in page.assets)
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    first = emulator.control.requests(path="/rest/assets")[0]
    assert first["method"] == "GET"


async def test_deleting_an_asset_removes_it_and_a_second_delete_is_404(
    client: UpstreamClient, emulator: Emulator
) -> None:
    put_assets(emulator, OWNER, 2)
    page = await client.list_assets(OWNER)
    doomed = page.assets[0].asset_id
    await client.delete_asset(OWNER, doomed)
    after = await client.list_assets(OWNER)
    assert [asset.asset_id for asset in after.assets] == [page.assets[1].asset_id]
    with pytest.raises(UpstreamError) as refused:
        await client.delete_asset(OWNER, doomed)
    assert refused.value.status == 404
    # The other account cannot delete what the owner has.
    with pytest.raises(UpstreamError):
        await client.delete_asset(OTHER, page.assets[1].asset_id)


async def test_voice_token_sends_the_payload_as_a_json_string(
    client: UpstreamClient, emulator: Emulator
) -> None:
    payload = json.dumps({"voice": "eve", "personality": "assistant"})
    answer = await client.livekit_token(
        OWNER, {"sessionPayload": payload, "livekitUrl": "wss://livekit.grok.com"}
    )
    assert answer["token"].count(".") == 2
    with pytest.raises(UpstreamError) as refused:
        await client.livekit_token(
            OWNER, {"sessionPayload": {"voice": "eve"}, "livekitUrl": "x"}
        )
    assert refused.value.status == 400
