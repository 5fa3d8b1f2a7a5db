"""Who may call what: API clients, the admin, and nobody else.

Fails closed. The API needs the master key (``app.api_key``) or an enabled
managed key; with neither configured it answers loopback clients only,
unless ``security.allow_anonymous_api`` opens it on purpose. The admin API
needs the admin password as a bearer key (for scripts) or a login session
cookie, whose state-changing requests also carry the CSRF token; an API key
is refused there with a 403. ``security.allow_anonymous_admin`` opens the
admin API to everyone, loudly.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping

import attrs

from grok2api.config import Settings
from grok2api.errors import ApiError
from grok2api.security.client_address import TrustedProxies
from grok2api.security.keys import ANONYMOUS, MASTER, Caller, KeyRing
from grok2api.security.limits import Limiter
from grok2api.security.passwords import AdminPassword, load_admin_password
from grok2api.security.sessions import Session, SessionSigner, load_session_signer
from grok2api.storage import Storage

__all__ = ["AdminIdentity", "Authenticator", "presented_key"]

log = logging.getLogger(__name__)

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: ``Authorization: Bearer`` or ``x-api-key``."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = headers.get("x-api-key", "")
    return api_key.strip() or None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _is_local_host(host: str) -> bool:
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name in ("localhost", "localhost.") or is_loopback(name)


def _forbidden_page() -> ApiError:
    return ApiError(
        403,
        "Without an API key the API serves programs on this machine only, not "
        "web pages; set app.api_key (or create a key) to use it from a browser.",
        type="permission_error",
        code="anonymous_browser_refused",
    )


def _unauthorized(message: str, code: str) -> ApiError:
    return ApiError(401, message, type="authentication_error", code=code)


@attrs.frozen
class AdminIdentity:
    """How an admin request was authenticated: ``bearer``, ``session`` or
    ``anonymous`` (``allow_anonymous_admin``)."""

    method: str
    session: Session | None = None


class Authenticator:
    """One worker's view of every credential, kept in step with storage."""

    def __init__(
        self,
        storage: Storage,
        settings: Callable[[], Settings],
        environ: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._settings = settings
        self._environ = environ
        self._clock = clock
        self.keys = KeyRing(storage)
        self.limiter = Limiter(storage, settings, clock)
        self.proxies = TrustedProxies(())
        self._password: AdminPassword | None = None
        self._signer: SessionSigner | None = None

    async def open(self) -> None:
        """Load keys and credentials; say at start-up what is open to whom."""
        await self.reload()
        self._signer = await load_session_signer(self._storage)
        settings = self._settings()
        if settings.security.allow_anonymous_admin:
            log.warning(
                "security.allow_anonymous_admin is on: ANYONE who reaches this "
                "server can manage its tokens, keys and settings"
            )
        if settings.security.allow_anonymous_api:
            log.warning(
                "security.allow_anonymous_api is on: the API answers without a key"
            )
        elif not settings.app.api_key and not self.keys.any_enabled:
            log.info(
                "no API key configured: the API answers loopback clients only "
                "(set app.api_key or create a key)"
            )
        if self.proxies.trusts_everyone:
            log.warning(
                "security.trusted_proxies trusts every address: any client can "
                "choose its own address with X-Forwarded-For"
            )
        log.info("admin password source=%s", self.password.source)

    async def reload(self) -> None:
        settings = self._settings()
        self.proxies = TrustedProxies(settings.security.trusted_proxies)
        await self.keys.reload()
        self._password = await load_admin_password(
            settings.app.app_password, self._environ, self._storage
        )

    @property
    def password(self) -> AdminPassword:
        assert self._password is not None, "Authenticator.open() was not awaited"
        return self._password

    @property
    def signer(self) -> SessionSigner:
        assert self._signer is not None, "Authenticator.open() was not awaited"
        return self._signer

    # -- the API --------------------------------------------------------------

    def api_caller(
        self,
        key: str | None,
        client_address: str,
        *,
        host: str | None = None,
        origin: str | None = None,
    ) -> Caller:
        """Who is calling the API, or a 401 (a 403 for a web page trying to
        use the key-less local API)."""
        settings = self._settings()
        master = settings.app.api_key
        if key is not None:
            if master and _same(key, master):
                return MASTER
            record = self.keys.find(key)
            if record is not None:
                return Caller("key", record)
            raise _unauthorized(
                "Invalid API key. Send it as 'Authorization: Bearer <key>' or "
                "'x-api-key'.",
                "invalid_api_key",
            )
        if master or self.keys.any_enabled:
            raise _unauthorized(
                "Missing API key. Send it as 'Authorization: Bearer <key>' or "
                "'x-api-key'.",
                "invalid_api_key",
            )
        if settings.security.allow_anonymous_api:
            return ANONYMOUS
        if is_loopback(client_address):
            # Without a key, "local" must mean a program on this machine, not
            # a web page in its browser: a page from another site sends an
            # Origin, and one reached through DNS rebinding a foreign Host.
            allowed = settings.security.cors_allow_origins
            if origin is not None and "*" not in allowed and origin not in allowed:
                raise _forbidden_page()
            if host is not None and not _is_local_host(host):
                raise _forbidden_page()
            return ANONYMOUS
        raise _unauthorized(
            "No API key is configured, so only local clients may call the API; "
            "the operator must set app.api_key or create a key.",
            "invalid_api_key",
        )

    # -- the admin API -------------------------------------------------------

    async def admin_identity(
        self,
        *,
        key: str | None,
        cookie: str | None,
        csrf_token: str | None,
        method: str,
        client_address: str,
    ) -> AdminIdentity:
        """How an admin request is authenticated, or a 401/403/429."""
        if self._settings().security.allow_anonymous_admin:
            return AdminIdentity("anonymous")
        if key is not None:
            if await self.check_password(key, client_address):
                return AdminIdentity("bearer")
            raise _unauthorized(
                "The admin API needs the admin password as a bearer key, or a "
                "login session.",
                "invalid_admin_key",
            )
        if cookie:
            session = self.signer.verify(
                cookie,
                self.signer.password_tag(self.password.identity),
                self._clock(),
                self._settings().app.app_username,
            )
            if session is None:
                raise _unauthorized(
                    "The admin session has expired; log in again.",
                    "session_expired",
                )
            if method not in _SAFE_METHODS and not self.signer.csrf_matches(
                session, csrf_token
            ):
                raise ApiError(
                    403,
                    "This request needs the session's CSRF token in the "
                    "X-CSRF-Token header.",
                    type="permission_error",
                    code="csrf_failed",
                )
            return AdminIdentity("session", session)
        raise _unauthorized(
            "The admin API needs the admin password as a bearer key, or a "
            "login session.",
            "invalid_admin_key",
        )

    async def check_password(self, candidate: str, client_address: str) -> bool:
        """Check an admin password as a bearer key; an API key is a 403
        rather than a wrong password.

        Only wrong guesses count against the address, so a script with the
        right key is never slowed down; but once an address has used up its
        guesses, even the right password waits (else the throttle would
        only hide which guess was right, not stop the guessing).
        """
        if self._is_api_key(candidate):
            raise ApiError(
                403,
                "An API key cannot use the admin API.",
                type="permission_error",
                code="forbidden",
            )
        await self.limiter.refuse_if_locked_out(client_address)
        if await self.password.check(candidate):
            return True
        await self.limiter.count_failed_login(client_address)
        return False

    def _is_api_key(self, candidate: str) -> bool:
        master = self._settings().app.api_key
        return bool(master and _same(candidate, master)) or (
            self.keys.find(candidate) is not None
        )

    async def login(
        self, username: str, password: str, client_address: str
    ) -> tuple[str, Session]:
        """Check a login and open a session; every attempt counts against
        the address's login allowance."""
        await self.limiter.refuse_if_locked_out(client_address)
        settings = self._settings()
        name_ok = _same(username, settings.app.app_username)
        password_ok = await self.password.check(password)
        if not (name_ok and password_ok):
            log.info("admin login refused client=%s", client_address)
            await self.limiter.count_failed_login(client_address)
            raise _unauthorized("Wrong user name or password.", "invalid_login")
        log.info("admin login client=%s", client_address)
        return self.signer.issue(
            username,
            self.signer.password_tag(self.password.identity),
            self._clock(),
            settings.security.admin_session_ttl_sec,
        )
