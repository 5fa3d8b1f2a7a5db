"""The media cache: upstream assets downloaded once and served by the gateway.

Generated images and videos live on Grok's assets host, which answers only
to the owning account's cookie, so a browser cannot open them. The cache
downloads each asset with that cookie into ``DATA_DIR/media/{image,video}/``
and hands out an absolute URL on the gateway instead, which needs no
credential (see :mod:`grok2api.api.media_routes`).

Every worker process has its own :class:`MediaCache`; they share the folders.
Within a worker, concurrent requests for one asset wait for a single
download. Across workers, a download is written under a hidden temporary
name and renamed when complete, and nobody downloads an asset whose file
already exists, so readers only ever see whole files. A background task
trims each folder to ``[cache]`` limits, oldest first, and never deletes a
file that is being written or was handed out within :data:`GRACE_SECONDS`.
"""

from __future__ import annotations

import copy
import logging
import secrets
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from grok2api.config import Settings
from grok2api.errors import UpstreamError, UpstreamProtocolError
from grok2api.media.folder import (
    CachedFile,
    FolderScan,
    MediaFolder,
    OpenedFile,
    PartFile,
    TrimResult,
)
from grok2api.media.names import SNIFF_BYTES, MediaKind, name_stem, sniff_extension
from grok2api.media.urls import file_path, request_base_url, scope_base_url
from grok2api.security.client_address import TrustedProxies
from grok2api.storage import Storage, token_id_for
from grok2api.upstream import UpstreamClient, asset_url

__all__ = [
    "GRACE_SECONDS",
    "MAX_BYTES",
    "KindSummary",
    "MediaCache",
    "MediaStatistics",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: A file handed out (or served) this recently is never trimmed: the client
#: that got its URL has not had the time to open it yet.
GRACE_SECONDS = 300.0
#: The largest asset of each kind the cache downloads.
MAX_BYTES = {MediaKind.IMAGE: 64 * 1024 * 1024, MediaKind.VIDEO: 1024 * 1024 * 1024}
#: The shared secret behind every worker's file names.
NAME_KEY = "media.name_key"
#: A new file wakes the cleaner, but it trims at most this often.
MIN_TRIM_GAP = 1.0
#: Downloads are written to disk in pieces of about this size.
WRITE_BATCH = 1024 * 1024

_MB = 1024 * 1024
_A_KIND = {MediaKind.IMAGE: "an image", MediaKind.VIDEO: "a video"}


@attrs.frozen
class KindSummary:
    """One kind's folder: its cached files, its files being written, its cap."""

    count: int
    cached_bytes: int
    partial_bytes: int
    limit_bytes: int
    target_bytes: int


@attrs.frozen
class MediaStatistics:
    """Counters since start-up: assets downloaded, fetches that found a file
    already cached or waited for another fetch's download, and failures."""

    downloads: int
    reused: int
    failures: int


@attrs.define(eq=False)
class _Download:
    token_id: str
    done: trio.Event = attrs.Factory(trio.Event)
    error: UpstreamError | None = None


class _PartWriter:
    """Collects a download's chunks and writes them in batches off the loop."""

    def __init__(self, part: PartFile) -> None:
        self._part = part
        self._pending = bytearray()
        self.head = b""
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        self.size += len(chunk)
        self._pending += chunk
        if len(self._pending) >= WRITE_BATCH:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            await trio.to_thread.run_sync(self._part.write, data)


class MediaCache:
    """One worker's access to the media cache.

    Args:
        root: the cache folder, ``DATA_DIR/media``.
        storage: where the name key shared by all workers is kept.
        upstream: returns the current upstream client (a settings change
            may replace it).
        settings: returns the current settings (``[cache]``, ``app.app_url``).
        proxies: returns the trusted reverse proxies, for links built from
            forwarded headers.
        grace_seconds: how long a handed-out file is safe from trimming.
    """

    def __init__(
        self,
        root: Path,
        storage: Storage,
        *,
        upstream: Callable[[], UpstreamClient],
        settings: Callable[[], Settings],
        proxies: Callable[[], TrustedProxies],
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        root = Path(root).resolve()
        self.root = root
        self.folders = {
            kind: MediaFolder(root / kind.value, kind) for kind in MediaKind
        }
        self.grace_seconds = grace_seconds
        self._storage = storage
        self._upstream = upstream
        self._settings = settings
        self._proxies = proxies
        self._key: bytes | None = None
        self._key_lock = trio.Lock()
        self._downloads: dict[tuple[MediaKind, str], _Download] = {}
        self._wake = trio.Event()
        self._counts = {"downloads": 0, "reused": 0, "failures": 0}
        self._over_limit: set[MediaKind] = set()

    # -- fetching --------------------------------------------------------

    async def fetch(
        self,
        asset: str,
        secret: str,
        kind: MediaKind | str,
        *,
        base_url: str | None = None,
    ) -> str:
        """Make an upstream asset available on the gateway and return its URL.

        The asset is downloaded with ``secret`` unless it is already cached;
        either way its file counts as handed out now.

        Args:
            asset: the asset's URL on the assets host, or its path there.
            secret: the token of the account that owns the asset.
            kind: ``image`` or ``video``.
            base_url: the scheme and host of the link; by default
                ``app.app_url``, or else the current request's address.

        Returns:
            The absolute URL anyone can open the file at.

        Raises:
            UpstreamError: the download failed; an
                :class:`~grok2api.errors.UpstreamProtocolError` when the
                asset is not on the assets host, too large, or not an image
                (video) at all.
            ValueError: ``kind`` is neither ``image`` nor ``video``.
        """
        kind = MediaKind(kind)
        if base_url is None:
            base_url = self.base_url()
        name = await self._cached_name(asset, secret, kind)
        return base_url + file_path(kind, name)

    async def store(
        self,
        asset: str,
        data: bytes,
        kind: MediaKind | str,
        *,
        base_url: str | None = None,
    ) -> str:
        """Cache media the upstream sent inline and return its URL.

        The Imagine socket sends its images as bytes in the frame rather
        than as a download; they are named after the URL the frame gives
        them, exactly as a download of that URL would be, so the same image
        is stored once.

        Args:
            asset: the URL (or path) the upstream gave the media.
            data: its bytes.
            kind: ``image`` or ``video``.
            base_url: as for :meth:`fetch`.

        Raises:
            UpstreamProtocolError: the bytes are not a format of ``kind``
                the gateway serves, or larger than it accepts.
        """
        kind = MediaKind(kind)
        if base_url is None:
            base_url = self.base_url()
        extension = sniff_extension(kind, data[:SNIFF_BYTES])
        if extension is None or len(data) > MAX_BYTES[kind]:
            raise UpstreamProtocolError(
                f"The upstream sent {_A_KIND[kind]} the gateway cannot serve "
                "(an unknown format, or too large)."
            )
        url = asset_url(asset, self._upstream().options.assets_url)
        stem = name_stem(await self._name_key(), url)
        folder = self.folders[kind]
        name = await _in_thread(folder.find, stem)
        if name is None:
            name = await _in_thread(_write_file, folder, stem, extension, data)
            self._wake.set()
            log.info("media stored kind=%s name=%s bytes=%d", kind, name, len(data))
        return base_url + file_path(kind, name)

    def base_url(self) -> str:
        """The scheme and host of links handed out now (see :mod:`.urls`)."""
        return request_base_url(self._settings().app.app_url, self._proxies())

    def base_url_for(self, scope: dict[str, Any], headers: Any) -> str:
        """:meth:`base_url` for the request of an ASGI ``scope``."""
        return scope_base_url(
            self._settings().app.app_url, self._proxies(), scope, headers
        )

    async def _cached_name(self, asset: str, secret: str, kind: MediaKind) -> str:
        url = asset_url(asset, self._upstream().options.assets_url)
        stem = name_stem(await self._name_key(), url)
        token_id = token_id_for(secret)
        folder = self.folders[kind]
        while True:
            name = await _in_thread(folder.find, stem)
            if name is not None:
                self._counts["reused"] += 1
                return name
            running = self._downloads.get((kind, stem))
            if running is None:
                break
            await running.done.wait()
            if running.error is not None and running.token_id == token_id:
                # Each waiter raises its own copy: one exception object
                # raised in many tasks would collect all their tracebacks.
                raise copy.copy(running.error)
            # It succeeded (the file is there now), was cancelled, or failed
            # for another token: look again, and download if still needed.
        download = _Download(token_id)
        self._downloads[(kind, stem)] = download
        try:
            return await self._download(url, secret, kind, stem)
        except UpstreamError as exc:
            self._counts["failures"] += 1
            download.error = exc
            raise
        finally:
            del self._downloads[(kind, stem)]
            download.done.set()

    async def _download(self, url: str, secret: str, kind: MediaKind, stem: str) -> str:
        folder = self.folders[kind]
        # Checked again now that this task owns the download: another task
        # may have finished it between our first look and taking it over.
        name = await _in_thread(folder.find, stem)
        if name is not None:
            self._counts["reused"] += 1
            return name
        started = trio.current_time()
        part = await _in_thread(folder.create_part, stem)
        try:
            writer = _PartWriter(part)
            await self._upstream().download_asset(
                secret, url, writer.write, max_bytes=MAX_BYTES[kind]
            )
            await writer.flush()
            extension = sniff_extension(kind, writer.head)
            if extension is None:
                raise UpstreamProtocolError(
                    f"The asset is not {_A_KIND[kind]} in a format the gateway "
                    "serves (its first bytes match none of them)."
                )
            name = await _in_thread(folder.commit, part, stem, extension)
        except BaseException:
            with trio.CancelScope(shield=True):
                await _in_thread(part.discard)
            raise
        self._counts["downloads"] += 1
        self._wake.set()
        log.info(
            "media cached kind=%s name=%s bytes=%d elapsed=%.3fs",
            kind,
            name,
            writer.size,
            trio.current_time() - started,
        )
        return name

    async def _name_key(self) -> bytes:
        if self._key is None:
            async with self._key_lock:
                if self._key is None:
                    stored = await self._storage.put_value_if_absent(
                        NAME_KEY, secrets.token_hex(32)
                    )
                    self._key = bytes.fromhex(stored)
        return self._key

    # -- serving and administration -----------------------------------------

    async def open(self, kind: MediaKind, name: str) -> OpenedFile | None:
        """Open a cached file for serving (touching it), or ``None``."""
        return await _in_thread(self.folders[kind].open, name)

    def public_url(self, kind: MediaKind, name: str) -> str:
        return self.base_url() + file_path(kind, name)

    async def files(self, kind: MediaKind) -> tuple[CachedFile, ...]:
        """The cached files of ``kind``, newest first."""
        scan = await self._scan(kind)
        return tuple(reversed(scan.files))

    async def summary(self) -> dict[MediaKind, KindSummary]:
        cache = self._settings().cache
        summaries = {}
        for kind in MediaKind:
            scan = await self._scan(kind)
            limit = self._limit(kind)
            summaries[kind] = KindSummary(
                count=len(scan.files),
                cached_bytes=scan.cached_bytes,
                partial_bytes=scan.partial_bytes,
                limit_bytes=limit,
                target_bytes=int(limit * cache.cleanup_target_ratio),
            )
        return summaries

    async def delete(self, kind: MediaKind, name: str) -> int | None:
        """Delete one cached file; its size, or ``None`` when there is none."""
        return await _in_thread(self.folders[kind].remove, name)

    async def clear(self, kind: MediaKind) -> tuple[int, int]:
        """Delete every cached file of ``kind``; returns the count and bytes."""
        return await _in_thread(self.folders[kind].clear, time.time())

    def statistics(self) -> MediaStatistics:
        return MediaStatistics(**self._counts)

    async def _scan(self, kind: MediaKind) -> FolderScan:
        return await _in_thread(self.folders[kind].scan, time.time())

    # -- cleanup ---------------------------------------------------------

    async def trim(self) -> dict[MediaKind, TrimResult]:
        """Trim every folder over its limit once, oldest files first."""
        cache = self._settings().cache
        results = {}
        for kind, folder in self.folders.items():
            limit = self._limit(kind)
            trim = partial(
                folder.trim,
                limit=limit,
                target=int(limit * cache.cleanup_target_ratio),
                max_delete=cache.cleanup_max_delete,
                grace=self.grace_seconds,
                now=time.time(),
            )
            result = results[kind] = await _in_thread(trim)
            self._report(kind, result, limit)
        return results

    def _report(self, kind: MediaKind, result: TrimResult, limit: int) -> None:
        if result.deleted:
            log.info(
                "media cache trimmed kind=%s deleted=%d freed=%d remaining=%d",
                kind,
                result.deleted,
                result.freed,
                result.remaining,
            )
        if result.remaining <= limit:
            self._over_limit.discard(kind)
        elif kind not in self._over_limit:
            # Said once per episode, not on every pass while it lasts.
            self._over_limit.add(kind)
            log.warning(
                "media cache over its limit kind=%s bytes=%d limit=%d: the rest "
                "was handed out in the last %gs or is still downloading",
                kind,
                result.remaining,
                limit,
                self.grace_seconds,
            )

    async def serve_cleaner(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Trim the folders every ``cache.cleanup_interval_sec`` and soon after
        each new download, while ``cache.enable_auto_clean`` is on."""
        task_status.started()
        while True:
            with trio.move_on_after(self._settings().cache.cleanup_interval_sec):
                await self._wake.wait()
            self._wake = trio.Event()
            if self._settings().cache.enable_auto_clean:
                try:
                    await self.trim()
                except OSError:
                    log.exception("trimming the media cache failed; will try again")
            await trio.sleep(MIN_TRIM_GAP)

    def _limit(self, kind: MediaKind) -> int:
        cache = self._settings().cache
        limit_mb = (
            cache.image_limit_mb if kind is MediaKind.IMAGE else cache.video_limit_mb
        )
        return limit_mb * _MB


def _write_file(folder: MediaFolder, stem: str, extension: str, data: bytes) -> str:
    part = folder.create_part(stem)
    try:
        part.write(data)
        return folder.commit(part, stem, extension)
    except BaseException:
        part.discard()
        raise


async def _in_thread(function: Callable[..., _T], *args: object) -> _T:
    return await trio.to_thread.run_sync(partial(function, *args))
