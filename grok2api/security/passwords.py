"""The admin password: where it comes from and how it is checked.

Three sources, first match wins:

1. ``GROK2API_APP_APP_PASSWORD`` (or its old name) in the environment;
2. ``app.app_password`` in ``config.toml``;
3. a hash in storage, set by ``grok2api admin set-password`` or generated on
   the first start that found no password at all.

A generated password is random, printed once to the console of the worker
that stored it, and only its scrypt hash is kept; no well-known default
password exists. Checking a password costs one scrypt run (tens of
milliseconds by design), so a worker remembers the digest of a password that
already passed, and the login throttle bounds how many wrong guesses anyone
gets to make.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import sys
from collections.abc import Mapping

import attrs
import trio

from grok2api.config.environment import variable_for
from grok2api.storage import Storage

__all__ = [
    "ADMIN_PASSWORD_VALUE",
    "AdminPassword",
    "hash_password",
    "load_admin_password",
    "verify_password",
]

log = logging.getLogger(__name__)

#: The storage value holding the stored password's hash.
ADMIN_PASSWORD_VALUE = "admin.password_hash"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **_SCRYPT)
    return "scrypt${}${}${}${}${}".format(
        _SCRYPT["n"],
        _SCRYPT["r"],
        _SCRYPT["p"],
        base64.b64encode(salt).decode(),
        base64.b64encode(digest).decode(),
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@attrs.define
class AdminPassword:
    """The admin password in force on this worker."""

    #: ``environment``, ``file`` or ``stored``.
    source: str
    _plain: str = attrs.field(default="", repr=False)
    _hash: str = attrs.field(default="", repr=False)
    _passed: set[str] = attrs.field(factory=set, repr=False)

    @property
    def identity(self) -> bytes:
        """What changes whenever the password does. Sessions carry a keyed
        digest of it (:meth:`SessionSigner.password_tag`), never a plain
        one: a fast hash of a configured password would let anyone holding
        a cookie guess the password offline."""
        return (self._hash or "plain:" + self._plain).encode("utf-8")

    async def check(self, candidate: str) -> bool:
        if self._plain:
            return hmac.compare_digest(
                candidate.encode("utf-8"), self._plain.encode("utf-8")
            )
        digest = hashlib.sha256(candidate.encode("utf-8")).hexdigest()
        if digest in self._passed:
            return True
        ok = await trio.to_thread.run_sync(verify_password, candidate, self._hash)
        if ok:
            self._passed = {digest}
        return ok


async def load_admin_password(
    configured: str, environ: Mapping[str, str], storage: Storage
) -> AdminPassword:
    """The password in force; generates and stores one when there is none."""
    if configured:
        variable = variable_for(environ, "app", "app_password")
        source = "environment" if variable else "file"
        return AdminPassword(source, plain=configured)
    stored = await storage.get_value(ADMIN_PASSWORD_VALUE)
    if stored:
        return AdminPassword("stored", hash=stored)
    generated = secrets.token_urlsafe(18)
    mine = await trio.to_thread.run_sync(hash_password, generated)
    winner = await storage.put_value_if_absent(ADMIN_PASSWORD_VALUE, mine)
    if winner == mine:
        # Printed, not logged: the one time this password is ever shown.
        print(
            "\n  No admin password was set, so one was generated:\n\n"
            f"      {generated}\n\n"
            "  It is shown only this once; only its hash is stored. Change it\n"
            "  with `grok2api admin set-password`.\n",
            file=sys.stderr,
            flush=True,
        )
        log.warning("generated an admin password and printed it on the console")
    return AdminPassword("stored", hash=winner)
