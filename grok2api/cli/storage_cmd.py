"""``grok2api storage migrate`` and ``grok2api import-reference``.

Both move data into a storage backend through
:meth:`~grok2api.storage.Storage.import_tokens`, which keeps every token's
ledger state and writes only what differs, so running either command twice
leaves the same result. Neither prints a secret: tokens are named by their
id, storage URLs are shown with their password masked.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from grok2api.api.continuity import BINDING_KEY_VALUE
from grok2api.config import (
    ServerOptions,
    Settings,
    check_settings,
    load_settings,
    mask_url,
    server_options_from_env,
)
from grok2api.config.aliases import RENAMED, is_ignored, resolve_aliases
from grok2api.config.layers import flatten
from grok2api.config.loading import check_entries
from grok2api.errors import Grok2APIError
from grok2api.gateway import open_storage
from grok2api.media.cache import NAME_KEY as MEDIA_NAME_KEY
from grok2api.pool.importing import checked_secret, pool_name
from grok2api.security.keys import key_digest, key_hint, new_key_id
from grok2api.security.passwords import (
    ADMIN_PASSWORD_VALUE,
    hash_password,
    verify_password,
)
from grok2api.security.sessions import SESSION_KEY_VALUE
from grok2api.storage import (
    ApiKeyRecord,
    ExportedToken,
    StatsRow,
    Storage,
    TokenQuery,
    TokenStatus,
)

__all__ = ["add_commands", "storage_type_for"]

_PAGE = 500
_SCHEMES = {
    "redis": "redis",
    "rediss": "redis",
    "postgresql": "pgsql",
    "postgres": "pgsql",
    "pgsql": "pgsql",
    "postgresql+asyncpg": "pgsql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mysql+aiomysql": "mysql",
    "sqlite": "local",
}
_STATUSES = {
    "active": TokenStatus.ACTIVE,
    "cooling": TokenStatus.COOLING,
    "expired": TokenStatus.INVALID,
    "invalid": TokenStatus.INVALID,
    "disabled": TokenStatus.DISABLED,
}
# The reference's shipped admin password; adopting it would publish the panel.
_REFERENCE_DEFAULT_KEY = "grok2api"


def add_commands(commands: Any) -> None:
    storage = commands.add_parser("storage", help="move data between storage backends")
    actions = storage.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate",
        help="copy every token (with its ledger) and the runtime config to another "
        "backend; safe to run again",
    )
    migrate.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URL",
        help="redis://, postgresql://, mysql://, sqlite:///FILE, a file or a data "
        "directory",
    )
    migrate.add_argument("--to", dest="target", required=True, metavar="URL")
    migrate.add_argument("--from-type", metavar="TYPE", help="when the URL is unclear")
    migrate.add_argument("--to-type", metavar="TYPE", help="when the URL is unclear")
    migrate.set_defaults(run=_migrate)

    reference = commands.add_parser(
        "import-reference",
        help="import the data directory of the FastAPI reference product "
        "(token.json, config.toml, api_keys.json) into the configured storage",
    )
    reference.add_argument("directory", metavar="DIR")
    reference.set_defaults(run=_import_reference)


# -- where a storage is -------------------------------------------------------


def storage_type_for(url: str) -> str | None:
    """The storage type a URL's scheme names; ``local`` for a plain path, None
    when the scheme is unknown."""
    if "://" not in url:
        return "local"
    return _SCHEMES.get(url.split("://", 1)[0].lower())


@attrs.frozen
class _Place:
    """A storage backend named on the command line."""

    type: str
    url: str
    data_dir: Path
    shown: str


def _place(url: str, kind: str | None, flag: str, *, must_exist: bool) -> _Place:
    kind = (kind or storage_type_for(url) or "").lower()
    if not kind:
        raise Grok2APIError(
            f"{flag}: cannot tell the storage type of {mask_url(url)}; "
            f"name it with {flag}-type (local, redis, pgsql or mysql)."
        )
    if kind != "local":
        return _Place(kind, url, Path.cwd(), f"{kind} {mask_url(url)}")
    # A relative path means the working directory here, not DATA_DIR. A
    # directory (or a new path without a file suffix) is a data directory,
    # holding the backend's default file.
    text = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    path = Path(text).expanduser().absolute()
    if must_exist and not path.exists():
        raise Grok2APIError(f"{flag}: {path} does not exist.")
    if path.is_dir() or (not path.exists() and not path.suffix):
        return _Place(kind, "", path, f"local {path}")
    return _Place(kind, str(path), path.parent, f"local {path}")


@asynccontextmanager
async def _opened(place: _Place, settings: Settings) -> AsyncIterator[Storage]:
    options = ServerOptions(
        storage_type=place.type, storage_url=place.url, data_dir=place.data_dir
    )
    async with open_storage(options, settings) as (storage, _):
        yield storage


# -- writing tokens -----------------------------------------------------------


@attrs.define
class _Counts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged

    def add(self, other: _Counts) -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged

    def __str__(self) -> str:
        return f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged"


class _Progress:
    """A bar on a terminal, a line every few seconds anywhere else."""

    def __init__(self, total: int, stream: TextIO, every: float = 2.0) -> None:
        self.total = total
        self.done = 0
        self._stream = stream
        self._tty = stream.isatty()
        self._every = every
        self._last = time.monotonic()

    def advance(self, count: int) -> None:
        self.done += count
        if self._tty:
            width = 30
            filled = width if not self.total else width * self.done // self.total
            bar = "#" * filled + "." * (width - filled)
            self._stream.write(f"\r[{bar}] {self.done}/{self.total} tokens")
            self._stream.flush()
        elif time.monotonic() - self._last >= self._every:
            self._last = time.monotonic()
            print(f"copied {self.done}/{self.total} tokens", file=self._stream)

    def finish(self) -> None:
        if self._tty:
            self._stream.write("\n")
        else:
            print(f"copied {self.done}/{self.total} tokens", file=self._stream)


async def _pages(storage: Storage) -> AsyncIterator[list[ExportedToken]]:
    offset = 0
    while True:
        page = await storage.export_tokens(offset, _PAGE)
        if page:
            yield page
        if len(page) < _PAGE:
            return
        offset += len(page)


async def _fingerprints(storage: Storage) -> dict[str, int]:
    # Enough to tell new, updated and unchanged apart in the summary; the
    # backend itself compares field by field.
    found: dict[str, int] = {}
    async for page in _pages(storage):
        found.update((token.id, hash(token)) for token in page)
    return found


async def _write(
    target: Storage, batch: Sequence[ExportedToken], known: dict[str, int]
) -> _Counts:
    counts = _Counts()
    for token in batch:
        before = known.get(token.id)
        if before is None:
            counts.new += 1
        elif before != hash(token):
            counts.updated += 1
        else:
            counts.unchanged += 1
        known[token.id] = hash(token)
    await target.import_tokens(batch, time.time())
    return counts


def _merge(
    base: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in extra.items():
        merged.setdefault(section, {}).update(values)
    return merged


def _keys(overrides: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [
        f"{section}.{key}" for section, values in overrides.items() for key in values
    ]


# -- storage migrate ----------------------------------------------------------


def _migrate(args: argparse.Namespace) -> int:
    source = _place(args.source, args.from_type, "--from", must_exist=True)
    target = _place(args.target, args.to_type, "--to", must_exist=False)
    if attrs.evolve(source, shown="") == attrs.evolve(target, shown=""):
        raise Grok2APIError("--from and --to name the same storage; nothing to copy.")
    options = server_options_from_env(os.environ)
    settings = load_settings(options.data_dir, os.environ)
    return int(trio.run(_copy, source, target, settings))


async def _copy(source_place: _Place, target_place: _Place, settings: Settings) -> int:
    async with (
        _opened(source_place, settings) as source,
        _opened(target_place, settings) as target,
    ):
        total = (await source.list_tokens(TokenQuery(limit=0))).total
        known = await _fingerprints(target)
        progress = _Progress(total, sys.stderr)
        counts = _Counts()
        async for page in _pages(source):
            counts.add(await _write(target, page, known))
            progress.advance(len(page))
        progress.finish()

        overrides = await source.load_config_overrides()
        existing = await target.load_config_overrides()
        merged = _merge(existing, overrides)
        if merged != existing:
            await target.save_config_overrides(merged)
        shared = await _copy_shared_state(source, target, settings)
    copied = len(_keys(overrides))
    kept = len(set(_keys(existing)) - set(_keys(overrides)))
    print(f"migrated from {source_place.shown} to {target_place.shown}")
    print(f"tokens: {counts.total} copied ({counts})")
    if not copied:
        print("config: the source has no runtime overrides")
    else:
        print(
            f"config: {copied} runtime override key(s) copied"
            + ("" if merged != existing else " (already in place)")
            + (f"; {kept} kept that only the target had" if kept else "")
        )
    print("\n".join(shared))
    return 0


#: Named values the gateway keeps: the admin password hash, the session
#: signing key, the key naming conversation bindings and the key naming
#: cached media files. Copied only where the target has none.
_NAMED_VALUES = (
    ADMIN_PASSWORD_VALUE,
    SESSION_KEY_VALUE,
    BINDING_KEY_VALUE,
    MEDIA_NAME_KEY,
)
_STATS_DIMENSIONS = ("total", "model", "key", "token")


async def _copy_shared_state(
    source: Storage, target: Storage, settings: Settings
) -> list[str]:
    """API keys, named values, statistics and the audit log. Counters are
    topped up to the source's values rather than added, so a second run
    changes nothing."""
    target_keys = {key.digest: key for key in await target.list_api_keys()}
    new_keys = []
    uses: dict[str, tuple[int, float]] = {}
    for key in await source.list_api_keys():
        present = target_keys.get(key.digest)
        if present is None:
            new_keys.append(attrs.evolve(key, use_count=0, last_used_at=None))
            present = new_keys[-1]
        missing = key.use_count - present.use_count
        if missing > 0 or (key.last_used_at or 0) > (present.last_used_at or 0):
            uses[present.id] = (max(0, missing), key.last_used_at or 0)
    if new_keys:
        await target.add_api_keys(new_keys)
    if uses:
        await target.record_api_key_use(uses)

    values = 0
    for name in _NAMED_VALUES:
        value = await source.get_value(name)
        if value is not None and await target.get_value(name) is None:
            await target.put_value_if_absent(name, value)
            values += 1

    top_ups = []
    for period in ("hour", "day"):
        for dimension in _STATS_DIMENSIONS:
            have = {
                (row.start, row.value): row
                for row in await target.read_stats(period, dimension, 0)
            }
            for row in await source.read_stats(period, dimension, 0):
                top_up = _stats_top_up(row, have.get((row.start, row.value)))
                if top_up is not None:
                    top_ups.append(top_up)
    if top_ups:
        await target.add_stats(top_ups)

    keep = settings.stats.log_max_entries
    seen = {entry.request_id for entry in await target.list_audit(keep)}
    entries = [e for e in await source.list_audit(keep) if e.request_id not in seen]
    if entries:
        await target.append_audit(sorted(entries, key=lambda e: e.at), keep)
    return [
        f"api keys: {len(new_keys)} copied, {len(uses)} usage count(s) brought up "
        "to date",
        f"named values: {values} copied (admin password hash, shared keys)",
        f"statistics: {len(top_ups)} row(s) brought up to the source's counts",
        f"audit log: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} copied",
    ]


def _stats_top_up(row: StatsRow, present: StatsRow | None) -> StatsRow | None:
    if present is None:
        return row
    missing = attrs.evolve(
        row,
        requests=max(0, row.requests - present.requests),
        successes=max(0, row.successes - present.successes),
        failures=max(0, row.failures - present.failures),
        latency_ms=max(0.0, row.latency_ms - present.latency_ms),
    )
    if missing.requests or missing.successes or missing.failures:
        return missing
    return None


# -- import-reference ---------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise Grok2APIError(f"cannot read {path}: {exc}") from None


def _read_json(path: Path) -> Any:
    text = _read(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Grok2APIError(f"{path} is not valid JSON: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any] | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Grok2APIError(f"{path} is not valid TOML: {exc}") from None


@attrs.frozen
class _Reference:
    """What a reference data directory holds, read and checked."""

    folder: Path
    tokens: Any
    tokens_time: float
    config: dict[str, Any] | None
    api_keys: Any


def _load_reference(folder: Path) -> _Reference:
    if not folder.is_dir():
        raise Grok2APIError(
            f"{folder} is not a directory; give the reference product's data "
            "directory (the one holding token.json)."
        )
    token_file = folder / "token.json"
    tokens = _read_json(token_file)
    if tokens is not None and not isinstance(tokens, dict):
        raise Grok2APIError(
            f"{token_file} is not the reference's token file: expected an object "
            'of pools such as {"ssoBasic": [...]}.'
        )
    found = _Reference(
        folder=folder,
        tokens=tokens,
        # The stand-in creation time of tokens without one: stable, so that a
        # re-import changes nothing.
        tokens_time=token_file.stat().st_mtime if tokens is not None else 0.0,
        config=_read_toml(folder / "config.toml"),
        api_keys=_read_json(folder / "api_keys.json"),
    )
    if found.tokens is None and found.config is None and found.api_keys is None:
        raise Grok2APIError(
            f"{folder} holds none of token.json, config.toml and api_keys.json; "
            "is it the reference product's data directory?"
        )
    return found


def _number(item: Mapping[str, Any], key: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key!r} must be a non-negative number")
    return float(value)


def _count(item: Mapping[str, Any], key: str, default: int) -> int:
    value = _number(item, key)
    if value is None:
        return default
    if not value.is_integer():
        raise ValueError(f"{key!r} must be a whole number")
    return int(value)


def _millis(item: Mapping[str, Any], key: str) -> float | None:
    value = _number(item, key)
    return None if value is None or not math.isfinite(value) else value / 1000


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string")
    return value


def _reference_token(
    item: Any, pool: str, settings: Settings, created: float
) -> ExportedToken:
    if isinstance(item, str):
        item = {"token": item}
    if not isinstance(item, dict) or not isinstance(item.get("token"), str):
        raise ValueError("expected an object with a 'token' string")
    status = _STATUSES.get(_text(item, "status").lower() or "active")
    if status is None:
        raise ValueError(f"unknown status {item['status']!r}")
    tags = item.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("'tags' must be a list of strings")
    quota_total = getattr(settings.token, f"{pool}_quota")
    quota = _count(item, "quota", quota_total)
    hours = getattr(settings.token, f"{pool}_window_hours")
    return ExportedToken(
        secret=checked_secret(item["token"]),
        pool=pool,
        status=status,
        quota=quota,
        quota_total=max(quota, quota_total),
        window_seconds=int(hours * 3600),
        cooldown_until=_millis(item, "cooldown_until"),
        cooldown_reason=_text(item, "cooldown_reason"),
        fail_count=_count(item, "fail_count", 0),
        last_fail_at=_millis(item, "last_fail_at"),
        last_fail_reason=_text(item, "last_fail_reason"),
        last_used_at=_millis(item, "last_used_at"),
        use_count=_count(item, "use_count", 0),
        created_at=_millis(item, "created_at") or created,
        last_sync_at=_millis(item, "last_sync_at"),
        tags=tuple(tags),
        note=_text(item, "note"),
    )


def _reference_tokens(
    document: Mapping[str, Any], settings: Settings, created: float
) -> tuple[list[ExportedToken], list[str]]:
    tokens: list[ExportedToken] = []
    skipped: list[str] = []
    for name, items in document.items():
        try:
            pool = pool_name(name)
        except ValueError:
            skipped.append(f"pool {name!r}: not ssoBasic or ssoSuper; skipped whole")
            continue
        if not isinstance(items, list):
            skipped.append(f"pool {name!r}: expected a list of tokens; skipped whole")
            continue
        for index, item in enumerate(items):
            try:
                tokens.append(_reference_token(item, pool, settings, created))
            except ValueError as exc:
                skipped.append(f"{name}[{index}]: {exc}")
    return tokens, skipped


def _reference_config(
    document: Mapping[str, Any], source: str
) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    """The overrides a reference ``config.toml`` gives, under current names,
    with the renamed and the ignored keys as summary lines."""
    entries, problems = flatten(document, source)
    renamed = [
        f"{e.path} -> {'.'.join(RENAMED[e.section, e.key])}"
        for e in entries
        if (e.section, e.key) in RENAMED
    ]
    ignored = [
        f"{e.path} (not used by grok2api)"
        for e in entries
        if is_ignored(e.section, e.key)
    ]
    resolved, _ = resolve_aliases(entries)
    tables, bad = check_entries(resolved)
    ignored += [line.replace(f" (from {source})", "") for line in problems + bad]
    return tables, renamed, ignored


async def _admin_password(
    overrides: dict[str, dict[str, Any]], configured: str, storage: Storage
) -> str | None:
    """Take the reference's admin password as the stored one (hashed), only
    where the target has none of its own."""
    imported = overrides.get("app", {}).pop("app_password", None)
    if not imported:
        return None
    stored = await storage.get_value(ADMIN_PASSWORD_VALUE)
    if configured == imported or (
        stored and await trio.to_thread.run_sync(verify_password, imported, stored)
    ):
        return "admin password: the target already holds the reference's app_key"
    if configured or stored:
        return (
            "admin password: the target already has one; the reference's app_key "
            "was not imported"
        )
    if imported == _REFERENCE_DEFAULT_KEY:
        return (
            "admin password: the reference's app_key is its public default; not "
            "imported (the gateway generates one on its first start)"
        )
    hashed = await trio.to_thread.run_sync(hash_password, imported)
    await storage.put_value(ADMIN_PASSWORD_VALUE, hashed)
    return (
        "admin password: the reference's app_key is now the stored admin "
        "password (only its hash is kept)"
    )


def _seconds(item: Mapping[str, Any], key: str) -> float | None:
    value = _number(item, key)
    if value is None or not math.isfinite(value):
        return None
    # The reference wrote some times in seconds and some in milliseconds.
    return value / 1000 if value > 100_000_000_000 else value


def _reference_api_key(item: Any, created: float) -> tuple[ApiKeyRecord, int, float]:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise ValueError("expected an object with a 'key' string")
    key = item["key"].strip()
    if len(key) < 8:
        raise ValueError("the key is shorter than 8 characters")
    active = item.get("is_active", True)
    if not isinstance(active, bool):
        raise ValueError("'is_active' must be true or false")
    record = ApiKeyRecord(
        id=new_key_id(),
        name=_text(item, "name").strip()[:100] or "imported",
        digest=key_digest(key),
        hint=key_hint(key),
        enabled=active,
        created_at=_seconds(item, "created_at") or created,
    )
    return record, _count(item, "usage_count", 0), _seconds(item, "last_used_at") or 0


async def _store_api_keys(storage: Storage, api_keys: Any, created: float) -> list[str]:
    if not isinstance(api_keys, list):
        return ["api keys: api_keys.json is not a list; nothing imported"]
    known = {key.digest for key in await storage.list_api_keys()}
    new: list[ApiKeyRecord] = []
    uses: dict[str, tuple[int, float]] = {}
    skipped: list[str] = []
    for index, item in enumerate(api_keys):
        try:
            record, count, last_used = _reference_api_key(item, created)
        except ValueError as exc:
            skipped.append(f"  api_keys[{index}]: {exc}")
            continue
        if record.digest in known:
            continue
        known.add(record.digest)
        new.append(record)
        if count or last_used:
            uses[record.id] = (count, last_used)
    if new:
        await storage.add_api_keys(new)
    if uses:
        await storage.record_api_key_use(uses)
    lines = [
        f"api keys: {len(new)} imported as managed keys "
        f"({len(api_keys) - len(new) - len(skipped)} already present)"
    ]
    if skipped:
        lines.append(f"api keys: {len(skipped)} skipped as malformed:")
        lines += skipped
    return lines


def _import_reference(args: argparse.Namespace) -> int:
    reference = _load_reference(Path(args.directory).expanduser())
    options = server_options_from_env(os.environ)
    base = load_settings(options.data_dir, os.environ)
    return int(trio.run(_store_reference, reference, options, base))


async def _store_reference(
    reference: _Reference, options: ServerOptions, base: Settings
) -> int:
    lines: list[str] = [f"imported from {reference.folder}"]
    async with open_storage(options, base) as (storage, _):
        existing = await storage.load_config_overrides()
        imported: dict[str, dict[str, Any]] = {}
        if reference.config is not None:
            source = str(reference.folder / "config.toml")
            imported, renamed, ignored = _reference_config(reference.config, source)
            current = check_settings(options.data_dir, os.environ, existing).settings
            note = await _admin_password(imported, current.app.app_password, storage)
            imported = {section: keys for section, keys in imported.items() if keys}
            lines.append(
                f"config: {len(_keys(imported))} key(s) stored as runtime overrides"
                + (f": {', '.join(_keys(imported))}" if imported else "")
            )
            lines += [f"  renamed {line}" for line in renamed]
            lines += [f"  ignored {line}" for line in ignored]
            if note:
                lines.append(note)
        merged = _merge(existing, imported)
        # Checked before anything is written, so a bad mix fails cleanly.
        settings = check_settings(options.data_dir, os.environ, merged).settings

        if reference.tokens is not None:
            tokens, skipped = _reference_tokens(
                reference.tokens, settings, reference.tokens_time
            )
            known = await _fingerprints(storage)
            counts = _Counts()
            for start in range(0, len(tokens), _PAGE):
                counts.add(await _write(storage, tokens[start : start + _PAGE], known))
            lines.append(f"tokens: {len(tokens)} imported ({counts})")
            if skipped:
                lines.append(f"tokens: {len(skipped)} skipped as malformed:")
                lines += [f"  {line}" for line in skipped]
        if reference.api_keys is not None:
            lines += await _store_api_keys(storage, reference.api_keys, time.time())
        if merged != existing:
            await storage.save_config_overrides(merged)
    print("\n".join(lines))
    return 0
