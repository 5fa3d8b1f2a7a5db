"""Client addresses behind proxies, session cookies and password hashes."""

from __future__ import annotations

import hashlib

import pytest

from grok2api.security.client_address import TrustedProxies
from grok2api.security.passwords import hash_password, verify_password
from grok2api.security.sessions import SessionSigner

PROXIES = TrustedProxies(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # An untrusted peer is the client, whatever it claims.
        ("198.51.100.9", ["1.2.3.4"], "198.51.100.9"),
        ("198.51.100.9", [], "198.51.100.9"),
        # A trusted proxy: the right-most entry it did not add itself.
        ("10.0.0.2", ["203.0.113.5"], "203.0.113.5"),
        ("10.0.0.2", ["6.6.6.6, 203.0.113.5"], "203.0.113.5"),
        ("10.0.0.2", ["6.6.6.6, 203.0.113.5, 10.1.1.1"], "203.0.113.5"),
        ("10.0.0.2", ["6.6.6.6", "203.0.113.5, 10.1.1.1"], "203.0.113.5"),
        # Only trusted hops: the farthest one we can vouch for.
        ("10.0.0.2", ["10.9.9.9"], "10.9.9.9"),
        ("10.0.0.2", [], "10.0.0.2"),
        # Garbage from a trusted hop stops the walk at the last known address.
        ("10.0.0.2", ["203.0.113.5, not-an-ip, 10.1.1.1"], "10.1.1.1"),
        ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
        # Ports some proxies append are not part of the address.
        ("10.0.0.2", ["203.0.113.5:4711"], "203.0.113.5"),
        ("10.0.0.2", ["[2001:db8::1]:80"], "2001:db8::1"),
        ("::ffff:10.0.0.2", ["203.0.113.5"], "203.0.113.5"),
    ],
)
def test_client_address(peer: str, forwarded: list[str], client: str) -> None:
    assert PROXIES.client_address(peer, forwarded) == client


def test_trusting_everyone_is_noticed() -> None:
    assert TrustedProxies(["0.0.0.0/0"]).trusts_everyone
    assert not PROXIES.trusts_everyone
    assert PROXIES.forwarded_https("10.0.0.2", "https")
    assert not PROXIES.forwarded_https("198.51.100.9", "https")


def test_password_hash_round_trip() -> None:
    stored = hash_password("correct horse battery")
    assert "correct horse" not in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("x", "not a hash")
    assert hash_password("same") != hash_password("same"), "salted"


def test_session_cookie_is_signed_expiring_and_bound_to_the_password() -> None:
    signer = SessionSigner(b"k" * 32)
    tag = signer.password_tag(b"plain:correct horse")
    cookie, session = signer.issue("admin", tag, now=1000.0, ttl=60)

    def verify(value: str, tag: str = tag, now: float = 1001.0, user: str = "admin"):  # type: ignore[no-untyped-def]
        return signer.verify(value, tag, now, user)

    assert verify(cookie, now=1059.0) == session
    assert verify(cookie, now=1060.0) is None, "expired"
    other = signer.password_tag(b"plain:another")
    assert verify(cookie, tag=other) is None, "password changed"
    assert verify(cookie, user="root") is None, "user name changed"
    assert SessionSigner(b"x" * 32).verify(cookie, tag, 1001.0, "admin") is None
    body, _, signature = cookie.partition(".")
    forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
    assert verify(forged) is None
    assert verify("garbage") is None
    # The cookie is readable; it must not carry anything a guesser could
    # test passwords against without the signing key.
    assert hashlib.sha256(b"plain:correct horse").hexdigest()[:16] not in cookie
    assert tag != SessionSigner(b"x" * 32).password_tag(b"plain:correct horse")
    assert signer.csrf_matches(session, session.csrf_token)
    assert not signer.csrf_matches(session, None)
    _, other = signer.issue("admin", "fp-1", now=1000.0, ttl=60)
    assert not signer.csrf_matches(session, other.csrf_token)
