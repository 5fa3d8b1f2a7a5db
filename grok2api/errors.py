"""The one exception tree of grok2api.

Every error the gateway raises on purpose derives from :class:`Grok2APIError`.
Third-party errors (httpx, curl_cffi, sqlite3, redis, SQL drivers) are
translated into these classes at exactly one boundary each and re-raised
``from`` the original, so callers never need to know which library failed.

Upstream failures are classified *before* anyone is penalised: the class of an
:class:`UpstreamError` says whose fault it was, and only :class:`TokenRejected`
and :class:`UpstreamRateLimited` ever touch a token's record.
"""

from __future__ import annotations

import enum

__all__ = [
    "ApiError",
    "ConfigError",
    "EgressBlocked",
    "FailureKind",
    "Grok2APIError",
    "MediaFetchError",
    "NoTokenAvailable",
    "PluginError",
    "SealedSecretError",
    "StorageError",
    "StorageUnavailable",
    "TokenRejected",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamRateLimited",
    "UpstreamRequestRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class FailureKind(enum.Enum):
    """Whose fault an upstream failure was; decides who gets penalised."""

    #: The request itself was bad (input the upstream refuses). Nobody is
    #: penalised and retrying with another token would not help.
    REQUEST = "request"
    #: The token is invalid, expired or blocked. Counts against the token.
    TOKEN = "token"
    #: The token hit its upstream rate limit. The token cools down.
    RATE_LIMIT = "rate_limit"
    #: Our egress was refused (Cloudflare challenge, connection failure).
    #: Not the token's fault; another attempt may use another egress.
    EGRESS = "egress"
    #: The upstream itself failed (5xx, broken stream). Nobody is penalised.
    UPSTREAM = "upstream"
    #: The failure cannot be attributed (an empty 403, an unexplained error).
    #: Nobody is penalised.
    AMBIGUOUS = "ambiguous"


class Grok2APIError(Exception):
    """Root of every error grok2api raises deliberately."""


class ConfigError(Grok2APIError):
    """The configuration is invalid.

    Raised at start-up (and by ``grok2api config check``) with every bad key
    collected in :attr:`problems`, each a ``"path: reason"`` line, so the
    operator can fix them all in one pass.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"the configuration has {len(self.problems)} problem(s):\n{lines}"
        )


class PluginError(Grok2APIError):
    """A plugin is missing, misspelt or returned something unusable.

    Raised at start-up; the message names the plugin and the hook.
    """


class StorageError(Grok2APIError):
    """A storage backend failed in a way that is not an outage (bad data)."""


class SealedSecretError(StorageError):
    """A stored secret is sealed, and ``security.secret_key`` cannot open it
    (no key, or another one). The operator must set the key it was sealed
    with; the API answers 503 meanwhile."""


class StorageUnavailable(StorageError):
    """The storage backend cannot be reached right now.

    The API answers 503 with ``Retry-After``; the caller should try again
    later. Nothing was written by the failed call.
    """


class ApiError(Grok2APIError):
    """An error that maps directly onto an OpenAI error envelope.

    Raised by the API layer for client mistakes and gateway-side refusals.
    ``status`` is the HTTP status, ``type``/``code``/``param`` the fields of
    the envelope, ``headers`` extra response headers such as ``Retry-After``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})


class NoTokenAvailable(Grok2APIError):
    """No token in the model's pools can take this request now.

    ``counts`` maps a state name (``active``, ``cooling``, ``exhausted``,
    ``invalid``, ``disabled``) to how many tokens are in it; ``retry_after``
    is the number of seconds until the earliest known reset, or ``None`` when
    no reset is known (no healthy token at all).
    """

    def __init__(
        self, model: str, counts: dict[str, int], retry_after: float | None
    ) -> None:
        self.model = model
        self.counts = dict(counts)
        self.retry_after = retry_after
        described = ", ".join(
            f"{n} {state}" for state, n in sorted(self.counts.items()) if n
        )
        described = described or "no tokens"
        super().__init__(f"No token can serve model {model!r} right now ({described}).")

    @property
    def quota_exhausted(self) -> bool:
        """True when waiting helps: some token will have quota again later."""
        return self.retry_after is not None


class MediaFetchError(Grok2APIError):
    """A user-supplied media part could not be fetched, decoded or uploaded.

    ``index`` is the position of the part in the flattened message list; the
    API turns this into a 400 that names the part without revealing anything
    about the target host.
    """

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class UpstreamError(Grok2APIError):
    """The upstream (Grok) refused or failed a call.

    ``kind`` says whose fault it was (see :class:`FailureKind`); ``status`` is
    the upstream HTTP status when there was one; ``charged`` is true when the
    upstream may already have counted the request against the token's quota.
    Subclasses exist per kind so ``except`` clauses read naturally.
    """

    kind: FailureKind = FailureKind.AMBIGUOUS

    def __init__(
        self, message: str, *, status: int | None = None, charged: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.charged = charged


class UpstreamRequestRejected(UpstreamError):
    """The upstream refused the request's content; do not retry elsewhere."""

    kind = FailureKind.REQUEST


class TokenRejected(UpstreamError):
    """The token is invalid, expired or its account is blocked.

    ``blocked`` is true for a definitive account block, which invalidates the
    token at once instead of counting towards ``token.fail_threshold``.
    """

    kind = FailureKind.TOKEN

    def __init__(
        self, message: str, *, status: int | None = None, blocked: bool = False
    ) -> None:
        super().__init__(message, status=status)
        self.blocked = blocked


class UpstreamRateLimited(UpstreamError):
    """The token hit its upstream rate limit.

    ``remaining`` is the quota the upstream still reports (``0`` when it says
    the window is used up, ``None`` when it does not say); ``retry_after`` the
    seconds until the window resets, when the upstream tells.
    """

    kind = FailureKind.RATE_LIMIT

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        remaining: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.remaining = remaining
        self.retry_after = retry_after


class EgressBlocked(UpstreamError):
    """Our egress was refused: a Cloudflare challenge or a connection failure."""

    kind = FailureKind.EGRESS


class UpstreamUnavailable(UpstreamError):
    """The upstream failed on its side (5xx, or an unexplained in-band error)."""

    kind = FailureKind.UPSTREAM


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer, or stalled, within the configured timeout."""

    kind = FailureKind.UPSTREAM


class UpstreamProtocolError(UpstreamError):
    """The upstream answered something we cannot parse (a cut stream, bad JSON)."""

    kind = FailureKind.UPSTREAM
