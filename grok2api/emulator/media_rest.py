"""The fake grok.com's media REST calls: media posts, video upscale, the
account's asset list and asset deletion, and LiveKit voice tokens.

Each route goes through the same admission as the chat routes (the request
log, scripted faults for its endpoint name, Cloudflare and credential
checks), so tests can fault any of them:

* ``POST /rest/media/post/create`` (endpoint ``media-post``) -- a video post
  from a ``prompt`` or an image post from a ``mediaUrl``; answers
  ``{"post": {"id", "mediaType", ...}}``. Posts are kept per account in
  :class:`MediaPosts` (``app.extensions["grok_emulator_posts"]``) so the
  edit and video answers can check a ``parentPostId``.
* ``POST /rest/media/video/upscale`` (``upscale``) -- ``{"videoId"}`` of a
  video the account owns; stores an HD copy and answers ``{"hdMediaUrl"}``
  (absolute, on this origin).
* ``GET /rest/assets`` (``assets-list``) -- the account's assets, newest
  first, ``pageSize`` at a time, with ``nextPageToken``.
* ``DELETE /rest/assets-metadata/<id>`` (``assets-delete``) -- removes one of
  the account's assets; 404 for an id it does not own.
* ``POST /rest/livekit/tokens`` (``livekit``) -- checks that
  ``sessionPayload`` is a JSON string holding an object and answers a
  LiveKit-shaped token for the account.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from quart import Response, request
from quart_trio import QuartTrio

from .assets import AssetStore
from .responses import json_response
from .state import Account, EmulatorState, RequestRecord

__all__ = ["MediaPost", "MediaPosts", "register_media_rest"]

POST_TYPES = ("MEDIA_POST_TYPE_VIDEO", "MEDIA_POST_TYPE_IMAGE")
_MAX_PAGE_SIZE = 100

Admit = Callable[[str], Awaitable["tuple[RequestRecord, Account] | Response"]]
Reject = Callable[[RequestRecord, Response, str], Response]


@attrs.frozen
class MediaPost:
    """A media post an account created; edits and videos name it as parent."""

    post_id: str
    token_id: str
    media_type: str
    prompt: str | None
    media_url: str | None


class MediaPosts:
    """Every media post, by id."""

    def __init__(self) -> None:
        self.posts: dict[str, MediaPost] = {}

    def owned(self, post_id: str, tid: str) -> MediaPost | None:
        """The post ``post_id`` if the account ``tid`` made it."""
        post = self.posts.get(post_id)
        return post if post is not None and post.token_id == tid else None

    def clear(self) -> None:
        self.posts.clear()


def register_media_rest(
    app: QuartTrio,
    state: EmulatorState,
    assets: AssetStore,
    admit: Admit,
    reject: Reject,
) -> MediaPosts:
    """Add the media REST routes to ``app``; returns the post store."""
    routes = _MediaRoutes(state, assets, MediaPosts(), admit, reject)
    app.extensions["grok_emulator_posts"] = routes.posts
    app.add_url_rule(
        "/rest/media/post/create", "media_post", routes.create_post, methods=["POST"]
    )
    app.add_url_rule(
        "/rest/media/video/upscale", "upscale", routes.upscale, methods=["POST"]
    )
    app.add_url_rule("/rest/assets", "asset_list", routes.list_assets, methods=["GET"])
    app.add_url_rule(
        "/rest/assets-metadata/<asset_id>",
        "asset_delete",
        routes.delete_asset,
        methods=["DELETE"],
    )
    app.add_url_rule(
        "/rest/livekit/tokens", "livekit_tokens", routes.livekit, methods=["POST"]
    )

    @app.before_request
    async def forget_on_reset() -> None:
        if request.endpoint == "emulator_control.reset":
            routes.posts.clear()

    return routes.posts


def _bad(message: str) -> Response:
    return json_response(400, {"error": {"code": 3, "message": message}})


class _MediaRoutes:
    def __init__(
        self,
        state: EmulatorState,
        assets: AssetStore,
        posts: MediaPosts,
        admit: Admit,
        reject: Reject,
    ) -> None:
        self.state = state
        self.assets = assets
        self.posts = posts
        self._admit = admit
        self._reject = reject

    def _done(self, record: RequestRecord, body: Any) -> Response:
        self.state.close_record(record, "completed", status=200)
        return json_response(200, body)

    async def create_post(self) -> Response:
        admitted = await self._admit("media-post")
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        body = record.body if isinstance(record.body, dict) else {}
        media_type = body.get("mediaType")
        if media_type not in POST_TYPES:
            return self._reject(
                record, _bad("mediaType must be one of " + ", ".join(POST_TYPES)), "bad"
            )
        prompt = body.get("prompt")
        media_url = body.get("mediaUrl")
        if media_type == "MEDIA_POST_TYPE_IMAGE" and (
            not isinstance(media_url, str) or not media_url
        ):
            return self._reject(record, _bad("an image post needs mediaUrl"), "bad")
        if media_type == "MEDIA_POST_TYPE_VIDEO" and not isinstance(prompt, str):
            return self._reject(record, _bad("a video post needs a prompt"), "bad")
        post = MediaPost(
            str(uuid.uuid4()),
            account.token_id,
            media_type,
            prompt if isinstance(prompt, str) else None,
            media_url if isinstance(media_url, str) else None,
        )
        self.posts.posts[post.post_id] = post
        answer: dict[str, Any] = {"id": post.post_id, "mediaType": media_type}
        if post.prompt is not None:
            answer["prompt"] = post.prompt
        if post.media_url is not None:
            answer["mediaUrl"] = post.media_url
        return self._done(record, {"post": answer})

    async def upscale(self) -> Response:
        admitted = await self._admit("upscale")
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        body = record.body if isinstance(record.body, dict) else {}
        video_id = body.get("videoId")
        if not isinstance(video_id, str) or not video_id:
            return self._reject(record, _bad("videoId is required"), "bad")
        source = next(
            (
                asset
                for asset in self.assets.owned_by(account.token_id)
                if asset.content_type.startswith("video/")
                and f"/generated/{video_id}/" in "/" + asset.path
            ),
            None,
        )
        if source is None:
            error = {"error": {"code": 5, "message": "video not found"}}
            return self._reject(record, json_response(404, error), "not-found")
        hd_path = source.path.rsplit("/", 1)[0] + "/generated_video_hd.mp4"
        self.assets.put(account.token, hd_path, source.data, source.content_type)
        return self._done(record, {"hdMediaUrl": request.host_url + hd_path})

    async def list_assets(self) -> Response:
        admitted = await self._admit("assets-list")
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        try:
            size = int(request.args.get("pageSize", "50"))
        except ValueError:
            return self._reject(record, _bad("pageSize must be a number"), "bad")
        size = max(1, min(size, _MAX_PAGE_SIZE))
        owned = self.assets.owned_by(account.token_id)
        start = 0
        token = request.args.get("pageToken")
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode())
            except ValueError:
                return self._reject(record, _bad("pageToken is not valid"), "bad")
        page = owned[start : start + size]
        following = start + size
        next_token = (
            base64.urlsafe_b64encode(str(following).encode()).decode()
            if following < len(owned)
            else ""
        )
        listed = [
            {
                "assetId": asset.asset_id,
                "key": asset.path,
                "mimeType": asset.content_type,
                "name": asset.path.rsplit("/", 1)[-1],
                "sizeBytes": str(len(asset.data)),
                "createTime": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(asset.sequence)
                ),
            }
            for asset in page
        ]
        return self._done(record, {"assets": listed, "nextPageToken": next_token})

    async def delete_asset(self, asset_id: str) -> Response:
        admitted = await self._admit("assets-delete")
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        if not self.assets.remove(account.token_id, asset_id):
            error = {"error": {"code": 5, "message": "asset not found"}}
            return self._reject(record, json_response(404, error), "not-found")
        return self._done(record, {})

    async def livekit(self) -> Response:
        admitted = await self._admit("livekit")
        if isinstance(admitted, Response):
            return admitted
        record, account = admitted
        body = record.body if isinstance(record.body, dict) else {}
        payload = body.get("sessionPayload")
        try:
            session = json.loads(payload) if isinstance(payload, str) else None
        except ValueError:
            session = None
        if not isinstance(session, dict):
            return self._reject(
                record, _bad("sessionPayload must be a JSON string of an object"), "bad"
            )
        if not isinstance(body.get("livekitUrl"), str):
            return self._reject(record, _bad("livekitUrl is required"), "bad")
        claims = {
            "sub": account.user_id,
            "voice": session.get("voice"),
            "exp": int(time.time()) + 600,
        }
        token = ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
            for part in ({"alg": "HS256", "typ": "JWT"}, claims, uuid.uuid4().hex)
        )
        return self._done(record, {"token": token, "roomName": uuid.uuid4().hex})
