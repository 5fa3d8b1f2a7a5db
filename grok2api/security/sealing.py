"""Tokens encrypted at rest, in any storage backend (``security.secret_key``).

:class:`SealedStorage` wraps the configured backend: token secrets, named
values and the secrets among the runtime config overrides are sealed with
AES-256-GCM on the way in and opened on the way out, so the backend (a SQLite
file, a Redis dump, a database backup) only ever holds ciphertext for them.
Token ids are derived from the plain secret before sealing, so they stay
stable and the same secret is still recognised as the same token. The key is
derived from the operator's ``secret_key`` with HKDF; losing it makes the
stored tokens unusable, which is the point.

A value stored before sealing was switched on is read as it is, so turning
it on needs no migration; new and imported tokens are sealed from then on.
Without a key the wrapper still stands between the gateway and the backend,
sealing nothing but refusing to hand out a sealed value as if it were the
secret: sent upstream as a cookie, it would fail until the token was marked
invalid.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from grok2api.config.redaction import SECRET_KEYS
from grok2api.errors import SealedSecretError
from grok2api.storage import ExportedToken, Lease, NewToken, Storage

__all__ = ["Sealer", "SealedStorage", "is_sealed"]

_PREFIX = "sealed:v1:"
#: A named value sealed with the key that sealed the backend, or
#: :data:`_UNSEALED` while nothing is sealed.
_KEY_MARKER = "security.sealing_key_check"
_UNSEALED = "unsealed"
#: Tokens read at a time when a backend without a marker is checked.
_CHECK_PAGE = 500


def is_sealed(stored: str) -> bool:
    return stored.startswith(_PREFIX)


def _derive(secret_key: str, purpose: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"grok2api", info=purpose
    ).derive(secret_key.encode("utf-8"))


class Sealer:
    """AES-256-GCM with the nonce derived from the plaintext (as in SIV
    modes): sealing the same value twice gives the same text, so a backend
    sees an unchanged token as unchanged, and a nonce never repeats with a
    different plaintext. Equal secrets stay recognisable as equal, which
    token ids reveal anyway."""

    def __init__(self, secret_key: str) -> None:
        self._aead = (
            AESGCM(_derive(secret_key, b"token sealing v1")) if secret_key else None
        )
        self._nonce_key = (
            _derive(secret_key, b"token sealing nonce v1") if secret_key else b""
        )

    @property
    def seals(self) -> bool:
        """Whether there is a key, so values are sealed on the way in."""
        return self._aead is not None

    def seal(self, plain: str) -> str:
        if self._aead is None:
            return plain
        nonce = hmac.new(self._nonce_key, plain.encode("utf-8"), "sha256").digest()[:12]
        sealed = self._aead.encrypt(nonce, plain.encode("utf-8"), _PREFIX.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(_PREFIX):
            return stored
        if self._aead is None:
            raise SealedSecretError(
                "a stored secret is sealed, but security.secret_key is empty; "
                "set the key it was sealed with"
            )
        try:
            raw = base64.urlsafe_b64decode(stored[len(_PREFIX) :])
            plain = self._aead.decrypt(raw[:12], raw[12:], _PREFIX.encode())
        except (InvalidTag, ValueError) as exc:
            raise SealedSecretError(
                "a stored secret was sealed with another security.secret_key; "
                "set the key it was sealed with"
            ) from exc
        return plain.decode("utf-8")


def _forward(name: str) -> Any:
    async def forward(self: SealedStorage, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self.inner, name)(*args, **kwargs)

    forward.__name__ = name
    return forward


class SealedStorage(Storage):
    """Any backend, with token secrets and named values sealed at rest."""

    def __init__(self, inner: Storage, sealer: Sealer) -> None:
        self.inner = inner
        self.name = inner.name
        self._sealer = sealer
        # Whether the backend's marker is sealed (by this key: a marker
        # sealed by another would have refused the start).
        self._marked = False

    async def _opened(self, lease: Lease | None) -> Lease | None:
        if lease is None or not is_sealed(lease.secret):
            return lease
        try:
            secret = self._sealer.open(lease.secret)
        except SealedSecretError:
            # The reservation is not the caller's to give back: it never
            # learns of the lease.
            await self.inner.release(lease)
            raise
        return attrs.evolve(lease, secret=secret)

    async def check_key(self) -> None:
        """Refuse a key (or no key) that cannot open what is stored.

        The first process to seal anything leaves a marker sealed with its
        key, so a later start only opens the marker. A backend without one
        (new, or sealed by a version that left none) has every token tried
        once; only then is the marker written, so a wrong key never marks a
        backend as its own.

        Raises:
            SealedSecretError: stored secrets were sealed with another key,
                or are sealed and there is no key.
        """
        marker = await self.inner.get_value(_KEY_MARKER)
        if marker is not None:
            self._sealer.open(marker)
            self._marked = is_sealed(marker)
            return
        offset = 0
        while page := await self.inner.export_tokens(offset, _CHECK_PAGE):
            for token in page:
                self._sealer.open(token.secret)
            offset += len(page)
        if self._sealer.seals:
            await self._mark()
        else:
            await self.inner.put_value_if_absent(_KEY_MARKER, _UNSEALED)

    async def _mark(self) -> None:
        # Written before the first value this key seals, so that a start
        # with another key (or none) is refused from then on.
        if not self._marked and self._sealer.seals:
            await self.inner.put_value(_KEY_MARKER, self._sealer.seal(_KEY_MARKER))
            self._marked = True

    async def add_tokens(self, tokens: Sequence[NewToken], now: float) -> int:
        await self._mark()
        sealed = [attrs.evolve(t, secret=self._sealer.seal(t.secret)) for t in tokens]
        return await self.inner.add_tokens(sealed, now)

    async def import_tokens(self, tokens: Sequence[ExportedToken], now: float) -> int:
        await self._mark()
        sealed = [attrs.evolve(t, secret=self._sealer.seal(t.secret)) for t in tokens]
        return await self.inner.import_tokens(sealed, now)

    async def export_tokens(self, offset: int, limit: int) -> list[ExportedToken]:
        return [
            attrs.evolve(t, secret=self._sealer.open(t.secret))
            for t in await self.inner.export_tokens(offset, limit)
        ]

    async def token_secrets(self, token_ids: Sequence[str]) -> dict[str, str]:
        stored = await self.inner.token_secrets(token_ids)
        return {token_id: self._sealer.open(s) for token_id, s in stored.items()}

    async def reserve(self, *args: Any, **kwargs: Any) -> Lease | None:
        return await self._opened(await self.inner.reserve(*args, **kwargs))

    async def lease(self, *args: Any, **kwargs: Any) -> Lease | None:
        return await self._opened(await self.inner.lease(*args, **kwargs))

    async def save_config_overrides(self, overrides: dict[str, dict[str, Any]]) -> None:
        await self._mark()
        await self.inner.save_config_overrides(
            self._config(overrides, self._sealer.seal)
        )

    async def load_config_overrides(self) -> dict[str, dict[str, Any]]:
        stored = await self.inner.load_config_overrides()
        return self._config(stored, self._sealer.open)

    @staticmethod
    def _config(
        overrides: dict[str, dict[str, Any]], change: Callable[[str], str]
    ) -> dict[str, dict[str, Any]]:
        # Secrets set at runtime (a master key, a clearance cookie, a proxy
        # URL with a password) are sealed like tokens; the rest stays
        # readable.
        return {
            section: {
                key: change(value)
                if f"{section}.{key}" in SECRET_KEYS and isinstance(value, str)
                else value
                for key, value in values.items()
            }
            for section, values in overrides.items()
        }

    async def get_value(self, name: str) -> str | None:
        stored = await self.inner.get_value(name)
        return None if stored is None else self._sealer.open(stored)

    async def put_value(self, name: str, value: str) -> None:
        await self._mark()
        await self.inner.put_value(name, self._sealer.seal(value))

    async def put_value_if_absent(self, name: str, value: str) -> str:
        await self._mark()
        stored = await self.inner.put_value_if_absent(name, self._sealer.seal(value))
        return self._sealer.open(stored)


for _name in Storage.__abstractmethods__:
    if _name not in SealedStorage.__dict__:
        setattr(SealedStorage, _name, _forward(_name))
SealedStorage.__abstractmethods__ = frozenset()
