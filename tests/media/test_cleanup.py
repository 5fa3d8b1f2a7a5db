"""Trimming the cache to its [cache] limits: oldest first, never what is
fresh, handed out or still being written, and safe with several workers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import trio

from grok2api.emulator.assets import EmulatorAssets
from grok2api.media import MediaCache, MediaFolder, MediaKind
from tests.media.conftest import OWNER, OpenWorker, png

KB = 1024
MB = 1024 * KB


def folder_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(folder))


def plant(
    folder: Path, count: int, size: int, *, age: float, first: int = 0
) -> list[str]:
    """``count`` cached-looking files of ``size`` bytes, ``age`` seconds old
    and older by one second each, oldest last."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    now = time.time()
    for index in range(first, first + count):
        name = f"{index:032x}.png"
        (folder / name).write_bytes(png(size, seed=index))
        moment = now - age - index
        os.utime(folder / name, (moment, moment))
        names.append(name)
    return names


async def test_two_writers_and_their_cleaners_keep_the_folder_under_the_cap(
    assets: EmulatorAssets, open_worker: OpenWorker
) -> None:
    paths = [f"users/u-1/generated/img-{n}/image.png" for n in range(300)]
    for n, path in enumerate(paths):
        assets.put(OWNER, path, png(20 * KB, seed=n), "image/png")
    limits = {
        "image_limit_mb": 2,
        "cleanup_target_ratio": 0.5,
        "cleanup_interval_sec": 0.05,
        "grace_seconds": 0,
    }
    last_urls: list[str] = []
    async with open_worker(**limits) as first, open_worker(**limits) as second:

        async def write(worker_paths: list[str], cache: MediaCache) -> None:
            url = ""
            for path in worker_paths:
                url = await cache.fetch(path, OWNER, "image")
            last_urls.append(url)

        async with trio.open_nursery() as cleaners:
            await cleaners.start(first.cache.serve_cleaner)
            await cleaners.start(second.cache.serve_cleaner)
            async with trio.open_nursery() as writers:
                writers.start_soon(write, paths[::2], first.cache)
                writers.start_soon(write, paths[1::2], second.cache)
            await trio.sleep(2.5)
            cleaners.cancel_scope.cancel()

    folder = first.folder()
    assert folder_bytes(folder) <= 2 * MB
    assert len(os.listdir(folder)) < 300
    for url in last_urls:
        assert url.rpartition("/")[2] in os.listdir(folder)


async def test_trim_spares_fresh_handed_out_and_partial_files(
    assets: EmulatorAssets, open_worker: OpenWorker
) -> None:
    assets.put(OWNER, "users/u-1/handed/image.png", png(100 * KB), "image/png")
    async with open_worker(image_limit_mb=1, cleanup_target_ratio=0.5) as worker:
        folder = worker.folder()
        old = plant(folder, 12, 100 * KB, age=3600)
        fresh = plant(folder, 3, 100 * KB, age=0, first=100)
        url = await worker.cache.fetch("users/u-1/handed/image.png", OWNER, "image")
        handed_out = url.rpartition("/")[2]
        long_ago = time.time() - 7200
        os.utime(folder / handed_out, (long_ago, long_ago))
        # Handing it out again (no download: it is cached) makes it fresh.
        assert (
            await worker.cache.fetch("users/u-1/handed/image.png", OWNER, "image")
            == url
        )
        writing = f".{'c' * 32}.0123456789abcdef.part"
        (folder / writing).write_bytes(png(100 * KB))
        abandoned = f".{'d' * 32}.0123456789abcdef.part"
        (folder / abandoned).write_bytes(png(100 * KB))
        os.utime(folder / abandoned, (long_ago, long_ago))

        result = (await worker.cache.trim())[MediaKind.IMAGE]

    left = set(os.listdir(folder))
    assert left == {*fresh, handed_out, writing}
    assert result.deleted == len(old)
    assert result.remaining == folder_bytes(folder)


async def test_trim_deletes_at_most_cleanup_max_delete_oldest_first(
    open_worker: OpenWorker,
) -> None:
    async with open_worker(image_limit_mb=1, cleanup_max_delete=3) as worker:
        names = plant(worker.folder(), 20, 100 * KB, age=3600)
        result = (await worker.cache.trim())[MediaKind.IMAGE]
    assert result.deleted == 3
    # plant() makes later files older: the last three were the oldest.
    assert sorted(os.listdir(worker.folder())) == sorted(names[:-3])


async def test_trim_does_nothing_under_the_limit(open_worker: OpenWorker) -> None:
    async with open_worker(image_limit_mb=2) as worker:
        names = plant(worker.folder(), 10, 100 * KB, age=3600)
        result = (await worker.cache.trim())[MediaKind.IMAGE]
    assert result.deleted == 0
    assert sorted(os.listdir(worker.folder())) == sorted(names)


async def test_trim_leaves_what_is_not_a_cached_file_alone(
    open_worker: OpenWorker, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png(3 * MB))
    async with open_worker(image_limit_mb=1) as worker:
        folder = worker.folder()
        plant(folder, 15, 100 * KB, age=3600)
        link = folder / ("e" * 32 + ".png")
        link.symlink_to(outside)
        notes = folder / "notes.txt"
        notes.write_bytes(b"x" * 2 * MB)
        await worker.cache.trim()
        await worker.cache.clear(MediaKind.IMAGE)
    assert outside.exists() and link.is_symlink() and notes.exists()


async def test_two_workers_trimming_at_once_delete_only_what_is_needed(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "image"
    plant(folder, 200, 10 * KB, age=3600)
    workers = [MediaFolder(folder, MediaKind.IMAGE) for _ in range(2)]
    target = 1 * MB

    def trim(worker: MediaFolder) -> None:
        worker.trim(
            limit=target, target=target, max_delete=1000, grace=300, now=time.time()
        )

    async with trio.open_nursery() as nursery:
        for worker in workers:
            nursery.start_soon(trio.to_thread.run_sync, trim, worker)

    remaining = folder_bytes(folder)
    assert target - 10 * KB < remaining <= target


async def test_no_trimming_while_auto_clean_is_off(open_worker: OpenWorker) -> None:
    async with open_worker(
        image_limit_mb=1, enable_auto_clean=False, cleanup_interval_sec=0.05
    ) as worker:
        names = plant(worker.folder(), 20, 100 * KB, age=3600)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.cache.serve_cleaner)
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    assert sorted(os.listdir(worker.folder())) == sorted(names)
