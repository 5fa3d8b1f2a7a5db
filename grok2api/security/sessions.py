"""Admin login sessions: signed, expiring cookies and their CSRF tokens.

The cookie is its own record: user name, expiry, a session id and the
password's fingerprint, signed with HMAC-SHA256 under a key every worker
shares through storage. Nothing needs a server-side session table, changing
the password ends every session, and any worker can check any cookie. The
CSRF token is derived from the session id with the same key, so the panel
learns it at login and sends it back in ``X-CSRF-Token`` on every
state-changing request; a cross-site form cannot know it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

import attrs

from grok2api.storage import Storage

__all__ = [
    "SESSION_COOKIE",
    "SESSION_KEY_VALUE",
    "Session",
    "SessionSigner",
    "load_session_signer",
]

SESSION_COOKIE = "grok2api_session"
#: The storage value holding the session signing key.
SESSION_KEY_VALUE = "admin.session_key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@attrs.frozen
class Session:
    username: str
    session_id: str
    expires_at: float
    csrf_token: str


class SessionSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, data: bytes) -> bytes:
        message = purpose.encode() + b"\0" + data
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def password_tag(self, identity: bytes) -> str:
        """A keyed digest of the password in force (see
        :attr:`AdminPassword.identity`), bound into every session."""
        return _b64(self._mac("password", identity))[:22]

    def _csrf(self, session_id: str) -> str:
        return _b64(self._mac("csrf", session_id.encode()))[:32]

    def issue(
        self, username: str, fingerprint: str, now: float, ttl: float
    ) -> tuple[str, Session]:
        """A new session and the cookie value that carries it."""
        session_id = secrets.token_hex(12)
        expires_at = now + ttl
        payload = json.dumps(
            {"u": username, "s": session_id, "e": expires_at, "p": fingerprint},
            separators=(",", ":"),
        ).encode()
        cookie = f"{_b64(payload)}.{_b64(self._mac('session', payload))}"
        return cookie, Session(username, session_id, expires_at, self._csrf(session_id))

    def verify(
        self, cookie: str, fingerprint: str, now: float, username: str
    ) -> Session | None:
        """The session a cookie carries, if it is genuine, current, made
        under the password in force and for the admin user name in force."""
        body, _, signature = cookie.partition(".")
        try:
            payload = _unb64(body)
            genuine = hmac.compare_digest(
                _unb64(signature), self._mac("session", payload)
            )
            if not genuine:
                return None
            fields = json.loads(payload)
            session_user, session_id = str(fields["u"]), str(fields["s"])
            expires_at, signed_for = float(fields["e"]), str(fields["p"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires_at <= now or not hmac.compare_digest(signed_for, fingerprint):
            return None
        if not hmac.compare_digest(session_user.encode(), username.encode()):
            return None
        return Session(session_user, session_id, expires_at, self._csrf(session_id))

    def csrf_matches(self, session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode(), session.csrf_token.encode()
        )


async def load_session_signer(storage: Storage) -> SessionSigner:
    """The signer with the key shared by every worker (made on first use)."""
    key = await storage.put_value_if_absent(SESSION_KEY_VALUE, secrets.token_hex(32))
    return SessionSigner(bytes.fromhex(key))
