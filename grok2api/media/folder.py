"""One kind's cache folder on disk; every method here blocks.

:class:`MediaFolder` does the file-system work of the media cache and is
only ever called from a worker thread (``trio.to_thread.run_sync``), never on
the event loop. Several worker processes share the folders, so every step
tolerates another worker creating, touching or deleting the same file at the
same moment: a file that vanished is simply gone, and a finished download
appears under its final name in one atomic rename.

Nothing here follows a symbolic link. Only regular files whose names have
the exact form of a cached name are listed, served, trimmed or deleted;
anything else found in a folder is left alone.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import attrs

from grok2api.media.names import (
    MediaKind,
    extensions,
    is_cached_name,
    is_part_name,
    part_name,
)

__all__ = [
    "STALE_PART_SECONDS",
    "CachedFile",
    "FolderScan",
    "MediaFolder",
    "OpenedFile",
    "PartFile",
    "TrimResult",
]

#: A file still being written is rewritten every few seconds at most; one
#: untouched for this long belongs to a download that died with its worker.
STALE_PART_SECONDS = 3600.0

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# A FIFO planted under a valid name would block a plain open for ever.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


@attrs.frozen
class CachedFile:
    """A finished file in the cache; ``mtime`` is when it was last handed out."""

    name: str
    size: int
    mtime: float


@attrs.frozen
class FolderScan:
    """A folder's cached files, oldest first, and its files being written."""

    files: tuple[CachedFile, ...]
    partial_bytes: int
    stale_parts: tuple[str, ...]

    @property
    def cached_bytes(self) -> int:
        return sum(f.size for f in self.files)


@attrs.frozen
class TrimResult:
    """What one trim of a folder did; ``remaining`` counts partial files too."""

    deleted: int
    freed: int
    remaining: int


class OpenedFile:
    """A cached file opened for serving; reads never move a shared offset."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd: int | None = fd
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        if self._fd is None:
            raise ValueError("read from a closed file")
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        # A response whose body was never started (the client left during
        # the head) must not keep the descriptor.
        self.close()


class PartFile:
    """A download being written under a hidden name beside its final one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644
        )
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class MediaFolder:
    """The folder that holds one kind of cached media.

    Args:
        path: the folder; it is created on the first download.
        kind: what it holds, which decides the names it accepts.
    """

    def __init__(self, path: Path, kind: MediaKind) -> None:
        self.path = path
        self.kind = kind

    def find(self, stem: str) -> str | None:
        """The cached file for ``stem``, touched as handed out, or ``None``."""
        for extension in extensions(self.kind):
            name = f"{stem}.{extension}"
            try:
                if stat.S_ISREG(os.lstat(self.path / name).st_mode):
                    os.utime(self.path / name, follow_symlinks=False)
                    return name
            except FileNotFoundError:
                continue
        return None

    def create_part(self, stem: str) -> PartFile:
        self.path.mkdir(parents=True, exist_ok=True)
        return PartFile(self.path / part_name(stem, secrets.token_hex(8)))

    def commit(self, part: PartFile, stem: str, extension: str) -> str:
        """Give a finished download its final name; returns that name.

        When another worker finished the same asset first, its file stays
        and this copy is dropped. Two workers racing past that check both
        rename, which is harmless: the bytes are the same and a rename
        replaces atomically, so a reader sees one whole file or the other.
        """
        existing = self.find(stem)
        if existing is not None:
            part.discard()
            return existing
        part.close()
        name = f"{stem}.{extension}"
        os.replace(part.path, self.path / name)
        return name

    def open(self, name: str) -> OpenedFile | None:
        """Open the cached file ``name`` for reading and touch it, or return
        ``None`` when there is no such regular file inside the folder."""
        if not is_cached_name(self.kind, name):
            return None
        path = os.path.join(self.path, name)
        # The folder itself must not have been swapped for a link either.
        if os.path.realpath(path) != path:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK)
        except OSError:
            return None
        opened = OpenedFile(fd, 0)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            opened.close()
            return None
        opened.size = info.st_size
        if os.utime in os.supports_fd:
            os.utime(fd)
        return opened

    def scan(self, now: float) -> FolderScan:
        files: list[CachedFile] = []
        partial = 0
        stale: list[str] = []
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return FolderScan((), 0, ())
        for entry in entries:
            name = entry.name
            cached = is_cached_name(self.kind, name)
            if not cached and not is_part_name(name):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if cached:
                files.append(CachedFile(name, info.st_size, info.st_mtime))
            elif now - info.st_mtime > STALE_PART_SECONDS:
                stale.append(name)
            else:
                partial += info.st_size
        files.sort(key=lambda f: (f.mtime, f.name))
        return FolderScan(tuple(files), partial, tuple(stale))

    def trim(
        self, *, limit: int, target: int, max_delete: int, grace: float, now: float
    ) -> TrimResult:
        """Delete the oldest files until the folder holds ``target`` bytes,
        when it holds more than ``limit``.

        Files touched within ``grace`` seconds are kept whatever the size, as
        are files being written; at most ``max_delete`` files go per call.
        """
        scan = self.scan(now)
        for name in scan.stale_parts:
            self._unlink(name)
        total = scan.cached_bytes + scan.partial_bytes
        deleted = freed = 0
        if total <= limit:
            return TrimResult(0, 0, total)
        fresh_after = now - grace
        for cached in scan.files:
            if total <= target or deleted >= max_delete or cached.mtime > fresh_after:
                break
            path = self.path / cached.name
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                info = None
            if info is not None:
                # Handed out again since the scan: it stays.
                if info.st_mtime > fresh_after or not stat.S_ISREG(info.st_mode):
                    continue
                if self._unlink(cached.name):
                    deleted += 1
            # Gone either way (another worker may have removed it first).
            total -= cached.size
            freed += cached.size
        return TrimResult(deleted, freed, total)

    def remove(self, name: str) -> int | None:
        """Delete the cached file ``name``; its size, or ``None`` if absent."""
        if not is_cached_name(self.kind, name):
            return None
        try:
            info = os.lstat(self.path / name)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode) or not self._unlink(name):
            return None
        return info.st_size

    def clear(self, now: float) -> tuple[int, int]:
        """Delete every cached file (never one being written); returns the
        number deleted and their bytes."""
        count = size = 0
        for cached in self.scan(now).files:
            if self._unlink(cached.name):
                count += 1
                size += cached.size
        return count, size

    def _unlink(self, name: str) -> bool:
        try:
            os.unlink(self.path / name)
        except FileNotFoundError:
            return False
        return True
