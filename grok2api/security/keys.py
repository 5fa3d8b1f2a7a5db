"""Managed API keys: how they are made, stored and recognised.

A key is shown in full once, when it is created; storage keeps only its
SHA-256 digest and a hint for the operator. Keys are 32 random bytes, so a
plain digest is as strong as a slow password hash would be, and looking a key
up costs one hash per request. Each worker caches every key by digest and
reloads the cache when the shared change version moves, so a key disabled on
one worker stops working on all of them within about a second.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import attrs

from grok2api.storage import ApiKeyRecord, Storage

__all__ = ["Caller", "KeyRing", "key_digest", "key_hint", "new_api_key"]

KEY_PREFIX = "g2a-"


def new_api_key() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_hint(key: str) -> str:
    """What an operator sees of a key: enough to tell keys apart."""
    return f"{key[:8]}…{key[-4:]}"


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


@attrs.frozen
class Caller:
    """Who is calling the API: the master key, a managed key, or nobody
    (a loopback client or an API opened with ``allow_anonymous_api``)."""

    kind: str
    key: ApiKeyRecord | None = None

    @property
    def name(self) -> str:
        return self.key.name if self.key is not None else self.kind


MASTER = Caller("master")
ANONYMOUS = Caller("anonymous")


class KeyRing:
    """One worker's cache of the managed keys."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._by_digest: dict[str, ApiKeyRecord] = {}

    async def reload(self) -> None:
        keys = await self._storage.list_api_keys()
        self._by_digest = {key.digest: key for key in keys}

    @property
    def any_enabled(self) -> bool:
        return any(key.enabled for key in self._by_digest.values())

    def find(self, key: str) -> ApiKeyRecord | None:
        """The enabled record of a presented key, or None."""
        digest = key_digest(key)
        record = self._by_digest.get(digest)
        if record is None or not hmac.compare_digest(record.digest, digest):
            return None
        return record if record.enabled else None

    def forget(self, key_id: str) -> None:
        """Drop a key at once on this worker (others follow on reload)."""
        self._by_digest = {
            digest: key for digest, key in self._by_digest.items() if key.id != key_id
        }

    def remember(self, record: ApiKeyRecord) -> None:
        self.forget(record.id)
        self._by_digest[record.digest] = record
