"""Token listings for the admin API: filtered, ordered by pool then creation.

A listing is not part of the ledger, so it is read with plain pipelined
commands rather than a script: a script walking 100,000 tokens would hold up
every other worker's leases while it ran. The price is that a page is not one
snapshot; a token removed meanwhile is simply left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import redis

from grok2api import TokenPage, TokenQuery, TokenRecord, token_id_for

from .keys import Keys
from .records import record_from_fields
from .scripts import RECORD_FIELDS

__all__ = ["list_tokens", "load_records"]

# How many tokens one pipelined round trip reads.
_CHUNK = 1000


def load_records(r: redis.Redis, keys: Keys, token_ids: list[str]) -> list[TokenRecord]:
    """The records of some tokens, in the given order, skipping missing ones."""
    records: list[TokenRecord] = []
    for start in range(0, len(token_ids), _CHUNK):
        pipe = r.pipeline(transaction=False)
        for token_id in token_ids[start : start + _CHUNK]:
            pipe.hmget(keys.token(token_id), RECORD_FIELDS)
        for values in pipe.execute():
            record = record_from_fields(values)
            if record is not None:
                records.append(record)
    return records


def list_tokens(r: redis.Redis, keys: Keys, query: TokenQuery) -> TokenPage:
    """A page of tokens; see :meth:`grok2api.storage.Storage.list_tokens`."""
    pools = sorted(r.smembers(keys.pools))
    if query.pool is not None:
        pools = [pool for pool in pools if pool == query.pool]
    offset, limit = max(0, query.offset), max(0, query.limit)
    if query.status is None and query.tag is None and not query.search:
        return _unfiltered_page(r, keys, pools, offset, limit)

    matches = [token_id for token_id in _filtered(r, keys, pools, query)]
    page = load_records(r, keys, matches[offset : offset + limit])
    return TokenPage(items=page, total=len(matches))


def _unfiltered_page(
    r: redis.Redis, keys: Keys, pools: list[str], offset: int, limit: int
) -> TokenPage:
    pipe = r.pipeline(transaction=False)
    for pool in pools:
        pipe.zcard(keys.pool_tokens(pool))
    sizes: list[int] = pipe.execute()

    wanted: list[str] = []
    skip = offset
    for pool, size in zip(pools, sizes, strict=True):
        if skip >= size:
            skip -= size
            continue
        if len(wanted) < limit:
            end = skip + (limit - len(wanted)) - 1
            wanted += r.zrange(keys.pool_tokens(pool), skip, end)
        skip = 0
    return TokenPage(items=load_records(r, keys, wanted), total=sum(sizes))


def _filtered(
    r: redis.Redis, keys: Keys, pools: list[str], query: TokenQuery
) -> Iterator[str]:
    search = (query.search or "").lower()
    hashed = token_id_for(query.search) if query.search else None
    for pool in pools:
        token_ids: list[str] = r.zrange(keys.pool_tokens(pool), 0, -1)
        for start in range(0, len(token_ids), _CHUNK):
            chunk = token_ids[start : start + _CHUNK]
            pipe = r.pipeline(transaction=False)
            for token_id in chunk:
                pipe.hmget(keys.token(token_id), ("status", "tags", "note"))
            for token_id, (status, tags, note) in zip(
                chunk, pipe.execute(), strict=True
            ):
                if status is None:
                    continue
                if query.status is not None and status != query.status.value:
                    continue
                if query.tag is not None and query.tag not in json.loads(tags or "[]"):
                    continue
                # Part of the id, note or a tag; a pasted raw secret finds its
                # token through the id it hashes to, without secrets being read.
                if search and not (
                    search in token_id.lower()
                    or search in (note or "").lower()
                    or search in (tags or "").lower()
                    or token_id == hashed
                ):
                    continue
                yield token_id
