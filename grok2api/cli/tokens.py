"""``grok2api tokens add|import|list|export|remove|refresh|birth-date``.

These work directly on the configured storage, with or without a running
server; a running server sees the change at once (the storage's change
version moves) or, for quota, on its next lease.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import attrs
import trio

from grok2api.config import ServerOptions, load_settings, server_options_from_env
from grok2api.gateway import open_storage, upstream_options
from grok2api.jobs.birth_dates import BirthDates, parse_birth_date
from grok2api.models import BASIC, POOLS
from grok2api.pool.importing import checked_secret, parse_token_import, pool_name
from grok2api.pool.pool import TokenPool
from grok2api.pool.refresh import refresh_tokens
from grok2api.pool.view import token_as_dict
from grok2api.storage import TokenQuery
from grok2api.upstream import UpstreamClient

__all__ = ["Added", "add_commands", "add_secrets"]

_PAGE = 500
_ROW = "{:16}  {:5}  {:9}  {:>9}  {:>5}  {:>5}  {}"


def add_commands(commands: Any) -> None:
    tokens = commands.add_parser("tokens", help="manage the token pool")
    actions = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add tokens given as arguments")
    add.add_argument("tokens", nargs="+", metavar="TOKEN")
    _pool_option(add)
    add.set_defaults(run=partial(_run, _add))

    imp = actions.add_parser(
        "import",
        help="import tokens from a file (lines, JSON, or the reference's token file)",
    )
    imp.add_argument("file", help="a path, or - for standard input")
    _pool_option(imp)
    imp.set_defaults(run=partial(_run, _import))

    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--pool", type=pool_name, choices=POOLS)
    listing.add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    listing.set_defaults(run=partial(_run, _list))

    export = actions.add_parser(
        "export", help="print tokens with their secrets, in the import format"
    )
    export.add_argument("--pool", type=pool_name, choices=POOLS)
    export.set_defaults(run=partial(_run, _export))

    remove = actions.add_parser("remove", help="remove tokens by id")
    remove.add_argument("ids", nargs="+", metavar="ID")
    remove.set_defaults(run=partial(_run, _remove))

    refresh = actions.add_parser("refresh", help="re-read quota from the upstream now")
    refresh.add_argument(
        "ids", nargs="*", metavar="ID", help="token ids (default: all)"
    )
    refresh.add_argument("--pool", type=pool_name, choices=POOLS)
    refresh.set_defaults(run=partial(_run, _refresh))

    birth = actions.add_parser(
        "birth-date",
        help="record the account holder's own birth date (YYYY-MM-DD) for NSFW",
    )
    birth.add_argument("id", metavar="ID")
    birth.add_argument("date", nargs="?", metavar="DATE")
    birth.add_argument("--forget", action="store_true", help="forget the date")
    birth.set_defaults(run=partial(_run, _birth_date))


def _pool_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pool", type=pool_name, default=BASIC, choices=POOLS, help="default: basic"
    )


def _run(action: Any, args: argparse.Namespace) -> int:
    options = server_options_from_env(os.environ)
    return int(trio.run(action, options, args) or 0)


async def add_secrets(
    options: ServerOptions,
    secrets: Sequence[str],
    pool: str,
    tags: Sequence[Sequence[str]] = (),
    notes: Sequence[str] = (),
) -> Added:
    """Add tokens to storage; an existing token moves to ``pool``."""
    settings = load_settings(options.data_dir, os.environ)
    async with open_storage(options, settings) as (storage, plugins):
        token_pool = TokenPool(
            storage, plugins.selection_strategies(), lambda: settings
        )
        new = [
            token_pool.new_token(
                secret,
                pool,
                tags=tags[i] if i < len(tags) else (),
                note=notes[i] if i < len(notes) else "",
            )
            for i, secret in enumerate(secrets)
        ]
        moved = 0
        for token in {t.id: t for t in new}.values():
            record = await storage.get_token(token.id)
            moved += record is not None and record.pool != pool
        return Added(await storage.add_tokens(new, time.time()), moved)


@attrs.frozen
class Added:
    #: Tokens that were not stored before.
    new: int
    #: Tokens that were stored in another pool and now are in this one.
    moved: int


async def _add(options: ServerOptions, args: argparse.Namespace) -> int:
    try:
        for secret in args.tokens:
            checked_secret(secret)
    except ValueError as exc:
        print(f"grok2api: nothing added: {exc}", file=sys.stderr)
        return 2
    added = await add_secrets(options, args.tokens, args.pool)
    print(
        f"added {added.new} new token(s) to the {args.pool} pool "
        f"({len(args.tokens) - added.new} already present"
        + (f", {added.moved} of them moved from another pool)" if added.moved else ")")
    )
    return 0


async def _import(options: ServerOptions, args: argparse.Namespace) -> int:
    try:
        text = (
            sys.stdin.read()
            if args.file == "-"
            else await trio.Path(args.file).read_text(encoding="utf-8")
        )
    except (OSError, UnicodeDecodeError) as exc:
        print(f"grok2api: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        imported = parse_token_import(text, args.pool)
    except ValueError as exc:
        print(f"grok2api: the import is invalid: {exc}", file=sys.stderr)
        return 2
    by_pool: dict[str, list[Any]] = {}
    for token in imported:
        by_pool.setdefault(token.pool, []).append(token)
    total = moved = 0
    for pool, tokens in by_pool.items():
        added = await add_secrets(
            options,
            [t.secret for t in tokens],
            pool,
            [t.tags for t in tokens],
            [t.note for t in tokens],
        )
        total += added.new
        moved += added.moved
    print(
        f"imported {len(imported)} token(s), {total} new"
        + (f", {moved} moved to another pool" if moved else "")
    )
    return 0


async def _all_tokens(options: ServerOptions, pool: str | None) -> list[Any]:
    settings = load_settings(options.data_dir, os.environ)
    found: list[Any] = []
    async with open_storage(options, settings) as (storage, _):
        while True:
            page = await storage.list_tokens(
                TokenQuery(pool=pool, offset=len(found), limit=_PAGE)
            )
            found.extend(page.items)
            if not page.items or len(found) >= page.total:
                return found


async def _list(options: ServerOptions, args: argparse.Namespace) -> int:
    now = time.time()
    rows = [token_as_dict(t, now) for t in await _all_tokens(options, args.pool)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_ROW.format("ID", "POOL", "STATE", "QUOTA", "USES", "FAILS", "TAGS"))
    for row in rows:
        quota = f"{row['quota']}/{row['quota_total']}"
        tags = ",".join(row["tags"])
        print(
            _ROW.format(
                row["id"],
                row["pool"],
                row["state"],
                quota,
                row["use_count"],
                row["fail_count"],
                tags,
            )
        )
    print(f"{len(rows)} token(s)")
    return 0


async def _export(options: ServerOptions, args: argparse.Namespace) -> int:
    settings = load_settings(options.data_dir, os.environ)
    tokens = await _all_tokens(options, args.pool)
    async with open_storage(options, settings) as (storage, _):
        secrets = await storage.token_secrets([t.id for t in tokens])
    exported: dict[str, list[dict[str, Any]]] = {}
    for token in tokens:
        if token.id in secrets:
            exported.setdefault(token.pool, []).append(
                {
                    "token": secrets[token.id],
                    "tags": list(token.tags),
                    "note": token.note,
                }
            )
    print(json.dumps(exported, indent=2))
    return 0


async def _remove(options: ServerOptions, args: argparse.Namespace) -> int:
    settings = load_settings(options.data_dir, os.environ)
    async with open_storage(options, settings) as (storage, _):
        known = await storage.token_secrets(args.ids)
        removed = await storage.remove_tokens(args.ids)
    print(f"removed {removed} token(s)")
    unknown = [tid for tid in dict.fromkeys(args.ids) if tid not in known]
    for tid in unknown:
        print(f"grok2api: no token has the id {tid!r}", file=sys.stderr)
    return 1 if unknown else 0


async def _refresh(options: ServerOptions, args: argparse.Namespace) -> int:
    settings = load_settings(options.data_dir, os.environ)
    ids = list(args.ids) or [t.id for t in await _all_tokens(options, args.pool)]
    upstream = UpstreamClient(upstream_options(settings))
    try:
        async with open_storage(options, settings) as (storage, _):

            async def read_quota(secret: str) -> tuple[int, int | None, int | None]:
                limits = await upstream.rate_limits(secret)
                return limits.remaining, limits.total, limits.window_seconds

            results = await refresh_tokens(
                storage,
                read_quota,
                ids,
                concurrency=settings.performance.usage_max_concurrent,
                fail_threshold=settings.token.fail_threshold,
            )
    finally:
        await upstream.aclose()
    for result in results:
        detail = (
            f"remaining {result.remaining}" if result.ok else f"failed: {result.error}"
        )
        print(f"{result.token_id}  {detail}")
    failed = sum(not r.ok for r in results)
    print(f"refreshed {len(results) - failed} of {len(results)} token(s)")
    return 0 if failed == 0 else 1


async def _birth_date(options: ServerOptions, args: argparse.Namespace) -> int:
    if args.forget == (args.date is not None):
        print("grok2api: give either DATE or --forget", file=sys.stderr)
        return 2
    try:
        born = (
            None if args.forget else parse_birth_date(args.date, datetime.date.today())
        )
    except ValueError as exc:
        print(f"grok2api: nothing recorded: {exc}", file=sys.stderr)
        return 2
    settings = load_settings(options.data_dir, os.environ)
    async with open_storage(options, settings) as (storage, _):
        if await storage.get_token(args.id) is None:
            print(f"grok2api: there is no token with id {args.id}", file=sys.stderr)
            return 1
        dates = BirthDates(storage)
        if born is None:
            await dates.forget(args.id)
            print(f"forgot the birth date of {args.id}")
        else:
            await dates.put(args.id, born)
            print(f"recorded the birth date of {args.id}")
    return 0
