"""The upstream client: the one object that talks to Grok's web API."""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import trio

from grok2api.errors import (
    EgressBlocked,
    FailureKind,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from grok2api.proxies import Egress, EgressPurpose, ProxyProviders
from grok2api.storage import token_id_for
from grok2api.upstream.chat_stream import ChatStream
from grok2api.upstream.classify import BODY_INSPECT_LIMIT, classify_response
from grok2api.upstream.conversation import ConversationRequest
from grok2api.upstream.dialects import Dialect, get_dialect
from grok2api.upstream.headers import rest_headers
from grok2api.upstream.options import UpstreamOptions
from grok2api.upstream.stream import StreamParser, asset_url
from grok2api.upstream.transport import (
    Response,
    Transport,
    TransportStatistics,
    create_transport,
)

__all__ = [
    "AssetPage",
    "RateLimits",
    "UploadedFile",
    "UpstreamAsset",
    "UpstreamClient",
    "UpstreamStatistics",
]

log = logging.getLogger(__name__)

CONVERSATION_PATH = "/rest/app-chat/conversations/new"
#: Where a reply to an existing conversation goes; logged as this template.
CONTINUE_PATH = "/rest/app-chat/conversations/{conversation_id}/responses"
UPLOAD_PATH = "/rest/app-chat/upload-file"
RATE_LIMITS_PATH = "/rest/rate-limits"
MEDIA_POST_PATH = "/rest/media/post/create"
UPSCALE_PATH = "/rest/media/video/upscale"
ASSETS_PATH = "/rest/assets"
#: Logged as this template; the id is appended per call.
ASSET_DELETE_PATH = "/rest/assets-metadata/{asset_id}"
LIVEKIT_PATH = "/rest/livekit/tokens"
MEDIA_POST_TYPES = ("MEDIA_POST_TYPE_VIDEO", "MEDIA_POST_TYPE_IMAGE")

#: The largest JSON answer a plain REST call may return.
MAX_JSON_BYTES = 4 * 1024 * 1024

#: Redirects an asset download follows before giving up.
MAX_ASSET_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

#: What the web app adds when it opens an asset: a top-level navigation.
_ASSET_NAVIGATION_HEADERS = {
    "Accept": (
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
        "image/webp,image/apng,*/*;q=0.8"
    ),
    "Cache-Control": "no-cache",
    "Pragma": "no-cache",
    "Priority": "u=0, i",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-User": "?1",
    "Upgrade-Insecure-Requests": "1",
}
_ASSET_REFUSALS = {
    403: "the asset belongs to another account than the token's",
    404: "there is no such asset",
}


@attrs.frozen
class UploadedFile:
    """A file stored upstream; ``file_metadata_id`` goes into ``fileAttachments``."""

    file_metadata_id: str
    file_uri: str
    asset_url: str


@attrs.frozen
class UpstreamAsset:
    """One file in an account's upstream asset list."""

    asset_id: str
    #: Everything else the upstream said about it (key, mimeType, ...).
    details: dict[str, Any] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class AssetPage:
    """One page of an account's assets; an empty token means the last."""

    assets: tuple[UpstreamAsset, ...]
    next_page_token: str


@attrs.frozen
class RateLimits:
    """A token's quota for one model as the upstream reports it."""

    remaining: int
    total: int | None = None
    window_seconds: int | None = None


@attrs.frozen
class UpstreamStatistics:
    """Counters since start-up and the transport's current load."""

    requests: int
    open_streams: int
    transport: TransportStatistics


class UpstreamClient:
    """Sends conversations, uploads and quota checks to Grok.

    The client holds no token: every call takes the token's secret and uses
    it only in that request's ``Cookie`` header (and, hashed to the token id,
    to ask the proxy providers for that token's egress). Errors are always
    :class:`~grok2api.errors.UpstreamError` subclasses, already classified;
    an :class:`~grok2api.errors.EgressBlocked` is reported to the provider
    whose proxy the call used before it is raised.

    Args:
        options: base URLs, browser profile, static proxies, timeouts and
            chat defaults.
        transport: how requests travel; built from ``options`` when omitted.
            The client closes it in :meth:`aclose` either way.
        dialect: the chat body dialect; ``options.dialect`` when omitted.
        proxies: the proxy providers asked on every call; with none, the
            static proxies of ``options`` apply. The caller owns them and
            closes them; several clients may share them.
    """

    def __init__(
        self,
        options: UpstreamOptions,
        transport: Transport | None = None,
        *,
        dialect: Dialect | None = None,
        proxies: ProxyProviders | None = None,
    ) -> None:
        self.options = options
        self.transport = (
            transport if transport is not None else create_transport(options)
        )
        self.dialect = dialect if dialect is not None else get_dialect(options.dialect)
        self.proxies = proxies if proxies is not None else ProxyProviders()
        self._requests = 0
        self._open_streams = 0

    def _url(self, path: str) -> str:
        return self.options.base_url.rstrip("/") + path

    def _resolve(self, request: ConversationRequest) -> ConversationRequest:
        return attrs.evolve(
            request,
            temporary=(
                self.options.temporary
                if request.temporary is None
                else request.temporary
            ),
            disable_memory=(
                self.options.disable_memory
                if request.disable_memory is None
                else request.disable_memory
            ),
        )

    @asynccontextmanager
    async def open_conversation(
        self,
        secret: str,
        request: ConversationRequest,
        *,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[ChatStream]:
        """Start a new conversation, or continue one, and stream its answer.

        A request with ``conversation_id`` set goes to that conversation's
        ``responses`` endpoint; the upstream then need not send a
        conversation header line. Leaving the ``async with`` block closes the
        upstream response, which is how a client disconnect (a cancellation)
        stops the upstream call.

        Args:
            secret: the token; a continued conversation must belong to its
                account.
            request: what to ask; shaped by the client's dialect.
            idle_timeout: the longest silence between two events, instead
                of ``options.idle_timeout`` (video generation has its own).

        Yields:
            The answer's events; see :meth:`ChatStream.first_event`.

        Raises:
            UpstreamError: the upstream refused the request (classified from
                the status and body) or did not answer in time.
        """
        options = self.options
        idle = options.idle_timeout if idle_timeout is None else idle_timeout
        body = self.dialect.build_body(self._resolve(request))
        path = logged_path = CONVERSATION_PATH
        if request.conversation_id is not None:
            logged_path = CONTINUE_PATH
            path = CONTINUE_PATH.format(
                conversation_id=urllib.parse.quote(request.conversation_id, safe="")
            )
        headers = rest_headers(secret, options)
        started = trio.current_time()
        deadline = started + options.total_timeout
        egress = await self.egress_for(EgressPurpose.API, secret)
        self._requests += 1
        response: Response | None = None
        async with AsyncExitStack() as stack:
            # Entered first so that it also sees an in-band refusal raised
            # while the caller reads the stream.
            await stack.enter_async_context(self._faults_reported(egress))
            with trio.move_on_at(min(started + options.first_frame_timeout, deadline)):
                response = await stack.enter_async_context(
                    self.transport.stream(
                        "POST",
                        self._url(path),
                        headers=headers,
                        json=body,
                        read_timeout=max(options.first_frame_timeout, idle),
                        proxy_url=egress.proxy_url,
                    )
                )
            if response is None:
                self._log_call(logged_path, None, started, egress)
                raise UpstreamTimeout(
                    "Grok sent no response headers within "
                    f"{options.first_frame_timeout:g}s (first_frame_timeout)."
                )
            self._log_call(logged_path, response.status, started, egress)
            if response.status != 200:
                await self._raise_for_status(response)
            stream = ChatStream(
                response,
                StreamParser(options.assets_url),
                first_frame_timeout=options.first_frame_timeout,
                idle_timeout=idle,
                deadline=deadline,
            )
            self._open_streams += 1
            try:
                yield stream
            finally:
                self._open_streams -= 1

    async def upload_file(
        self, secret: str, file_name: str, mime_type: str, content: bytes
    ) -> UploadedFile:
        """Store a file upstream so a conversation can attach it.

        Args:
            secret: the token; the file belongs to its account.
            file_name: the name shown upstream.
            mime_type: the file's media type, e.g. ``image/png``.
            content: the file's bytes.

        Returns:
            The upstream ids and the absolute asset URL.

        Raises:
            UpstreamError: the upload was refused or the answer is unusable.
        """
        answer = await self._post_json(
            secret,
            UPLOAD_PATH,
            {
                "fileName": file_name,
                "fileMimeType": mime_type,
                "content": base64.b64encode(content).decode("ascii"),
            },
            EgressPurpose.ASSET,
        )
        file_id = answer.get("fileMetadataId") or answer.get("fileId")
        file_uri = answer.get("fileUri")
        if not isinstance(file_id, str) or not file_id:
            raise UpstreamProtocolError("Grok's upload answer has no fileMetadataId.")
        uri = file_uri if isinstance(file_uri, str) else ""
        return UploadedFile(
            file_id, uri, asset_url(uri, self.options.assets_url) if uri else ""
        )

    async def download_asset(
        self,
        secret: str,
        url: str,
        write: Callable[[bytes], Awaitable[None]],
        *,
        max_bytes: int,
    ) -> str:
        """Download an asset of the token's account (generated media, uploads).

        The body goes to ``write`` chunk by chunk as it arrives, so a video
        never sits in memory whole. Only the configured assets host is
        asked, since the request carries the account's cookie like every
        call. Redirects are followed (at most :data:`MAX_ASSET_REDIRECTS`):
        with the cookie while they stay on the assets host, without any
        credential when they lead elsewhere (a CDN's signed URL).

        Args:
            secret: the token of the account that owns the asset.
            url: the asset's absolute URL on the assets host, or its path.
            write: awaited with each chunk of the body, in order.
            max_bytes: the largest asset accepted.

        Returns:
            The media type the assets host declared (empty when none).

        Raises:
            UpstreamProtocolError: ``url`` is not on the assets host, or the
                asset is larger than ``max_bytes``.
            UpstreamError: the download was refused (``status`` 403 when the
                asset is another account's, 404 when it does not exist), or
                did not finish within ``total_timeout``.
        """
        options = self.options
        target = asset_url(url, options.assets_url)
        if not _on_host(target, options.assets_url):
            raise UpstreamProtocolError(
                "The asset URL is not on the assets host (network.assets_url); "
                "the account's cookie is sent nowhere else."
            )
        account_headers = rest_headers(
            secret,
            options,
            origin=options.assets_url.rstrip("/"),
            referer=options.base_url.rstrip("/") + "/",
        )
        del account_headers["Content-Type"]
        account_headers.update(_ASSET_NAVIGATION_HEADERS)
        egress = await self.egress_for(EgressPurpose.ASSET, secret)
        started = trio.current_time()
        status: int | None = None
        received = 0
        declared: str | None = None
        with trio.move_on_after(options.total_timeout):
            for _hop in range(MAX_ASSET_REDIRECTS + 1):
                self._requests += 1
                async with (
                    self._faults_reported(egress),
                    self.transport.stream(
                        "GET",
                        target,
                        headers=_asset_headers(target, options, account_headers),
                        read_timeout=options.request_timeout,
                        proxy_url=egress.proxy_url,
                    ) as response,
                ):
                    status = response.status
                    if status in _REDIRECTS:
                        target = _redirect_target(target, response.headers)
                        continue
                    if status != 200:
                        self._log_download(status, 0, started, egress)
                        await self._raise_for_asset_status(response)
                    length = response.headers.get("content-length", "")
                    if length.isdigit() and int(length) > max_bytes:
                        raise _asset_too_large(max_bytes)
                    async for chunk in response.aiter_bytes():
                        received += len(chunk)
                        if received > max_bytes:
                            raise _asset_too_large(max_bytes)
                        await write(chunk)
                    declared = response.headers.get("content-type", "")
                    break
            else:
                self._log_download(status, 0, started, egress)
                raise UpstreamProtocolError(
                    f"The assets host redirected more than {MAX_ASSET_REDIRECTS} times."
                )
        self._log_download(status, received, started, egress)
        if declared is None:
            raise UpstreamTimeout(
                "The asset did not download within "
                f"{options.total_timeout:g}s (stream_total_timeout)."
            )
        return declared

    async def _raise_for_asset_status(self, response: Response) -> None:
        try:
            await self._raise_for_status(response)
        except UpstreamError as exc:
            # An account, Cloudflare or rate-limit refusal keeps its own
            # class; a bare 403 or 404 is about the asset itself.
            refusal = _ASSET_REFUSALS.get(exc.status or 0)
            if refusal and exc.kind in (FailureKind.AMBIGUOUS, FailureKind.REQUEST):
                raise UpstreamError(
                    f"The assets host refused the download (HTTP {exc.status}): "
                    f"{refusal}.",
                    status=exc.status,
                ) from exc
            raise

    def _log_download(
        self, status: int | None, size: int, started: float, egress: Egress
    ) -> None:
        # The asset path names the account's user id; it stays out of the log.
        # DEBUG: the request's access line is its one INFO line.
        log.debug(
            "upstream call GET <asset> status=%s bytes=%d elapsed=%.3fs egress=%s",
            status if status is not None else "timeout",
            size,
            trio.current_time() - started,
            egress,
        )

    async def rate_limits(
        self,
        secret: str,
        model_name: str = "grok-4-1-thinking-1129",
        *,
        request_kind: str | None = "DEFAULT",
    ) -> RateLimits:
        """Ask how much quota the token has left for ``model_name``.

        Args:
            secret: the token.
            model_name: the model (reference) or mode name (later API).
            request_kind: sent as ``requestKind``; ``None`` leaves it out,
                as the later web app does.

        Raises:
            UpstreamError: the call was refused or the answer is unusable.
        """
        body: dict[str, Any] = {"modelName": model_name}
        if request_kind is not None:
            body = {"requestKind": request_kind, **body}
        answer = await self._post_json(secret, RATE_LIMITS_PATH, body)
        remaining = answer.get("remainingTokens", answer.get("remainingQueries"))
        if not isinstance(remaining, int):
            raise UpstreamProtocolError(
                "Grok's rate-limits answer has no remainingTokens or "
                "remainingQueries number."
            )
        total = answer.get("totalQueries")
        window = answer.get("windowSizeSeconds")
        return RateLimits(
            remaining,
            total if isinstance(total, int) else None,
            window if isinstance(window, int) else None,
        )

    async def create_media_post(
        self,
        secret: str,
        media_type: str,
        *,
        prompt: str | None = None,
        media_url: str | None = None,
    ) -> str:
        """Create the media post an image edit or a video hangs off.

        Args:
            media_type: ``MEDIA_POST_TYPE_VIDEO`` (from ``prompt``) or
                ``MEDIA_POST_TYPE_IMAGE`` (from the asset at ``media_url``).

        Returns:
            the post id, used as ``parentPostId``.

        Raises:
            ValueError: an unknown ``media_type``.
            UpstreamError: the call was refused or the answer has no id.
        """
        if media_type not in MEDIA_POST_TYPES:
            raise ValueError(f"unknown media post type {media_type!r}")
        body: dict[str, Any] = {"mediaType": media_type}
        if prompt is not None:
            body["prompt"] = prompt
        if media_url is not None:
            body["mediaUrl"] = media_url
        answer = await self._post_json(secret, MEDIA_POST_PATH, body)
        post = answer.get("post")
        post_id = post.get("id") if isinstance(post, dict) else None
        if not isinstance(post_id, str) or not post_id:
            raise UpstreamProtocolError("Grok's media post answer has no post id.")
        return post_id

    async def upscale_video(self, secret: str, video_id: str) -> str:
        """Ask for the HD version of a generated video.

        Returns:
            the HD video's absolute asset URL.

        Raises:
            UpstreamError: the call was refused or the answer has no URL.
        """
        answer = await self._post_json(secret, UPSCALE_PATH, {"videoId": video_id})
        url = answer.get("hdMediaUrl")
        if not isinstance(url, str) or not url:
            raise UpstreamProtocolError("Grok's upscale answer has no hdMediaUrl.")
        return asset_url(url, self.options.assets_url)

    async def list_assets(
        self, secret: str, *, page_token: str | None = None, page_size: int = 50
    ) -> AssetPage:
        """One page of the account's upstream assets, most recently used
        first.

        Raises:
            UpstreamError: the call was refused or the answer is unusable.
        """
        query = {
            "pageSize": str(page_size),
            "orderBy": "ORDER_BY_LAST_USE_TIME",
            "source": "SOURCE_ANY",
            "isLatest": "true",
        }
        if page_token:
            query["pageToken"] = page_token
        path = ASSETS_PATH + "?" + urllib.parse.urlencode(query)
        answer = await self._call_json("GET", secret, path, logged_path=ASSETS_PATH)
        listed = answer.get("assets", [])
        if not isinstance(listed, list):
            raise UpstreamProtocolError("Grok's asset list has no assets array.")
        assets = tuple(
            UpstreamAsset(item["assetId"], item)
            for item in listed
            if isinstance(item, dict) and isinstance(item.get("assetId"), str)
        )
        next_token = answer.get("nextPageToken")
        return AssetPage(assets, next_token if isinstance(next_token, str) else "")

    async def delete_asset(self, secret: str, asset_id: str) -> None:
        """Delete one of the account's upstream assets.

        Raises:
            UpstreamError: the call was refused (404 when there is no such
                asset).
        """
        path = ASSET_DELETE_PATH.format(asset_id=urllib.parse.quote(asset_id, safe=""))
        await self._call_json("DELETE", secret, path, logged_path=ASSET_DELETE_PATH)

    async def livekit_token(self, secret: str, body: dict[str, Any]) -> dict[str, Any]:
        """Ask for a LiveKit access token for a voice session.

        Args:
            body: the request as the web app sends it (``sessionPayload`` is
                a JSON string).

        Returns:
            the upstream's answer; its ``token`` is checked to be a string.

        Raises:
            UpstreamError: the call was refused or the answer has no token.
        """
        answer = await self._post_json(secret, LIVEKIT_PATH, body)
        if not isinstance(answer.get("token"), str) or not answer["token"]:
            raise UpstreamProtocolError("Grok's voice answer has no token.")
        return answer

    async def egress_for(self, purpose: EgressPurpose, secret: str) -> Egress:
        """The egress a call for ``purpose`` with this token would use now.

        An explicit ``asset_proxy_url`` carries asset traffic before any
        provider is asked; otherwise the first provider that answers wins,
        and without one the static ``proxy_url`` (or a direct connection).
        """
        if purpose is EgressPurpose.ASSET and self.options.asset_proxy_url:
            return Egress(self.options.asset_proxy_url)
        chosen = await self.proxies.choose(purpose, token_id_for(secret))
        if chosen is not None:
            return chosen
        return Egress(self.options.proxy_url)

    def statistics(self) -> UpstreamStatistics:
        """Requests sent so far and streams open now."""
        return UpstreamStatistics(
            self._requests, self._open_streams, self.transport.statistics()
        )

    async def aclose(self) -> None:
        """Close the transport and its pooled connections."""
        await self.transport.aclose()

    # -- helpers ---------------------------------------------------------

    @asynccontextmanager
    async def _faults_reported(self, egress: Egress) -> AsyncIterator[None]:
        try:
            yield
        except EgressBlocked:
            await self.proxies.report_egress_fault(egress)
            raise

    async def _post_json(
        self,
        secret: str,
        path: str,
        body: Any,
        purpose: EgressPurpose = EgressPurpose.API,
    ) -> dict[str, Any]:
        return await self._call_json("POST", secret, path, body, purpose)

    async def _call_json(
        self,
        method: str,
        secret: str,
        path: str,
        body: Any = None,
        purpose: EgressPurpose = EgressPurpose.API,
        *,
        logged_path: str | None = None,
    ) -> dict[str, Any]:
        """One REST call whose answer is a JSON object.

        Args:
            path: appended to ``base_url``, query string included.
            body: sent as JSON unless ``None``.
            logged_path: what the log shows instead of ``path``, so ids and
                page tokens stay out of it.
        """
        headers = rest_headers(secret, self.options)
        timeout = self.options.request_timeout
        started = trio.current_time()
        egress = await self.egress_for(purpose, secret)
        shown = logged_path or path
        self._requests += 1
        raw: bytes | None = None
        with trio.move_on_after(timeout):
            async with (
                self._faults_reported(egress),
                self.transport.stream(
                    method,
                    self._url(path),
                    headers=headers,
                    json=body,
                    read_timeout=timeout,
                    proxy_url=egress.proxy_url,
                ) as response,
            ):
                self._log_call(shown, response.status, started, egress, method)
                if response.status not in (200, 204):
                    await self._raise_for_status(response)
                raw = await response.aread(MAX_JSON_BYTES)
        if raw is None:
            raise UpstreamTimeout(
                f"Grok did not answer {shown} within {timeout:g}s (request_timeout)."
            )
        if not raw.strip():
            return {}
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise UpstreamProtocolError(
                f"Grok's answer to {shown} is not JSON."
            ) from exc
        if not isinstance(answer, dict):
            raise UpstreamProtocolError(f"Grok's answer to {shown} is not an object.")
        return answer

    async def _raise_for_status(self, response: Response) -> None:
        body = b""
        try:
            with trio.move_on_after(self.options.first_frame_timeout):
                body = await response.aread(BODY_INSPECT_LIMIT)
        except UpstreamError as exc:
            # The status alone still classifies; a broken error body only
            # loses detail.
            log.debug("upstream error_body_unreadable error=%s", type(exc).__name__)
        raise classify_response(response.status, response.headers, body)

    def _log_call(
        self,
        path: str,
        status: int | None,
        started: float,
        egress: Egress,
        method: str = "POST",
    ) -> None:
        # The request's own access line is the one INFO line per request.
        log.debug(
            "upstream call %s %s status=%s elapsed=%.3fs dialect=%s egress=%s",
            method,
            path,
            status if status is not None else "timeout",
            trio.current_time() - started,
            self.dialect.name,
            egress,
        )

    @asynccontextmanager
    async def open_call(
        self,
        secret: str,
        url: str,
        headers: dict[str, str],
        *,
        logged_path: str,
        content: bytes | None = None,
        json: Any = None,
    ) -> AsyncIterator[Response]:
        """Send one POST to ``url``, on any upstream host, and yield the
        response unread.

        For protocol modules beside this client (the gRPC-web account calls
        in ``upstream/account.py``): the call takes the token's API egress,
        an egress fault is reported to the provider that supplied it, and it
        is counted and logged (as ``logged_path``) like the client's own
        calls. The caller bounds it with a timeout and classifies the status.
        """
        started = trio.current_time()
        egress = await self.egress_for(EgressPurpose.API, secret)
        self._requests += 1
        async with (
            self._faults_reported(egress),
            self.transport.stream(
                "POST",
                url,
                headers=headers,
                content=content,
                json=json,
                read_timeout=self.options.request_timeout,
                proxy_url=egress.proxy_url,
            ) as response,
        ):
            self._log_call(logged_path, response.status, started, egress)
            yield response


def _on_host(url: str, home_url: str) -> bool:
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        return False
    where, home = urllib.parse.urlsplit(url), urllib.parse.urlsplit(home_url)
    return (where.scheme, where.netloc.lower()) == (home.scheme, home.netloc.lower())


def _asset_headers(
    target: str, options: UpstreamOptions, account_headers: dict[str, str]
) -> dict[str, str]:
    """The account's headers on the assets host; elsewhere a plain browser
    navigation that carries no cookie, statsig or request id."""
    if _on_host(target, options.assets_url):
        return account_headers
    return {"User-Agent": options.user_agent, **_ASSET_NAVIGATION_HEADERS}


def _redirect_target(current: str, headers: Mapping[str, str]) -> str:
    """Where a redirect of an asset download leads, if it may be followed:
    an http(s) URL, no downgrade from https, and no internal address
    literal unless the download already runs on one (a local emulator)."""
    location = headers.get("location", "").strip()
    target = urllib.parse.urljoin(current, location)
    here, there = urllib.parse.urlsplit(current), urllib.parse.urlsplit(target)
    usable = (
        bool(location)
        and there.scheme in ("http", "https")
        and bool(there.hostname)
        and not (here.scheme == "https" and there.scheme == "http")
        and (_internal_literal(here.hostname) or not _internal_literal(there.hostname))
    )
    if not usable:
        raise UpstreamProtocolError(
            "The assets host redirected to an address the gateway does not follow."
        )
    return target


def _internal_literal(host: str | None) -> bool:
    # Names are not resolved here: a redirect is the upstream's word, and the
    # literal form is what a forged Location would use to reach internals.
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host == "localhost"
    return not address.is_global


def _asset_too_large(max_bytes: int) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"The asset is larger than the {max_bytes // (1024 * 1024)} MB the "
        "media cache accepts for one file."
    )
