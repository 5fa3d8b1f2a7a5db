"""Everything the emulator remembers: options, accounts, faults, uploads,
conversations, the log.

One :class:`EmulatorState` belongs to one running emulator. It is touched only
from the Trio thread that serves the app (the control API is the way in from
other threads), so it needs no locks.
"""

from __future__ import annotations

import collections
import hashlib
import math
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import trio

__all__ = [
    "FAULT_KINDS",
    "HTTP_FAULT_KINDS",
    "IMAGINE_FAULT_KINDS",
    "POOL_DEFAULTS",
    "STREAM_FAULT_KINDS",
    "Account",
    "Conversation",
    "EmulatorConfig",
    "EmulatorState",
    "Fault",
    "RequestRecord",
    "Upload",
    "token_id",
]

#: Faults answered with an HTTP error before any check or quota charge.
HTTP_FAULT_KINDS = frozenset(
    {
        "401",
        "429",
        "429_no_quota",
        "403_cloudflare",
        "403_blocked",
        "403_empty",
        "403_antibot",
        "500",
        "502",
        "503",
    }
)
#: Faults that shape a 200 chat stream; they apply after the checks pass and
#: the chat is charged like a normal one.
STREAM_FAULT_KINDS = frozenset(
    {
        "inband_error",
        "inband_error_internal",
        "inband_error_after_tokens",
        "cut",
        "stall",
        # A video answer's last frame: moderated, or at 100 without videoUrl.
        "video_moderated",
        "video_no_url",
    }
)
#: Faults that shape an accepted Imagine WebSocket round (``imagine``).
IMAGINE_FAULT_KINDS = frozenset(
    {"ws_rate_limit", "ws_error", "ws_moderated", "ws_blocked", "ws_stall"}
)
FAULT_KINDS = HTTP_FAULT_KINDS | STREAM_FAULT_KINDS | IMAGINE_FAULT_KINDS
#: What a fault can target: ``chat`` is ``conversations/new``, ``continue`` a
#: reply to an existing conversation (``conversations/<id>/responses``).
ENDPOINTS = frozenset(
    {
        "chat",
        "continue",
        "upload",
        "rate-limits",
        "asset",
        "media-post",
        "upscale",
        "assets-list",
        "assets-delete",
        "livekit",
        "imagine",
        "accounts-tos",
        "birth-date",
        "nsfw",
        "any",
    }
)
_CHAT_ENDPOINTS = frozenset({"chat", "continue"})
#: Account settings calls a ``stall`` fault can hold back (emulator/accounts.py).
_STALLABLE_ENDPOINTS = frozenset({"accounts-tos", "birth-date", "nsfw"})

#: (total queries, window seconds) per pool, after the numbers the reference
#: client assumes (80 per 20 h basic, 140 per 2 h super).
POOL_DEFAULTS: dict[str, tuple[int, int]] = {
    "basic": (80, 72_000),
    "super": (140, 7_200),
    "heavy": (150, 7_200),
}


def token_id(token: str) -> str:
    """Return the short stable id the log shows instead of a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be non-negative, got {value!r}")


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value!r}")


@attrs.define
class EmulatorConfig:
    """Global knobs of the emulator; the control API can change any of them."""

    answer_tokens: int = attrs.field(default=8, validator=_positive)
    thinking_tokens: int = attrs.field(default=4, validator=_non_negative)
    line_delay: float = attrs.field(default=0.0, validator=_non_negative)
    require_statsig: bool = True
    statsig_prefixes: tuple[str, ...] = attrs.field(
        default=("e:", "x1:"), converter=tuple
    )
    require_cf_clearance: bool = False
    #: The clearance value to demand; ``None`` accepts any non-empty cookie.
    cf_clearance: str | None = None
    model_hash: str = "emu-mh-5f3a1c9e"
    #: When set, every answer is exactly these tokens (the echo is skipped).
    scripted_answer: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: Unknown tokens become basic accounts instead of failing with 401.
    auto_register: bool = False
    log_limit: int = attrs.field(default=10_000, validator=_positive)
    #: Conversations kept for replies; the least recently used go first.
    conversation_limit: int = attrs.field(default=1_000, validator=_positive)
    #: Most images one image answer makes; 0: as many as the request asks.
    image_yield: int = attrs.field(default=0, validator=_non_negative)
    #: Image answers come back moderated: progress frames, no image URLs.
    moderate_images: bool = False
    #: Imagine socket frames: ``later`` (status frames, percentages) or
    #: ``reference`` (image frames only, final as ``.jpg``).
    imagine_format: str = attrs.field(
        default="later", validator=attrs.validators.in_(("later", "reference"))
    )
    #: Images one Imagine round makes (at most 4 with ``enable_pro``).
    imagine_slots: int = attrs.field(default=6, validator=_positive)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` after validating every key and value.

        Raises:
            ValueError: on an unknown key or an invalid value; nothing changes.
        """
        names = {a.name for a in attrs.fields(EmulatorConfig)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(unknown)}")
        merged = attrs.evolve(self, **changes)
        for name in names:
            setattr(self, name, getattr(merged, name))

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["statsig_prefixes"] = list(self.statsig_prefixes)
        return data


@attrs.define
class Account:
    """One upstream account and its single quota window."""

    token: str
    pool: str = "basic"
    quota_total: int = 80
    remaining: int = 80
    window_seconds: int = 72_000
    blocked: bool = False
    token_id: str = attrs.field(init=False)
    user_id: str = attrs.field(init=False)
    window_started: float = attrs.field(factory=time.monotonic)

    def __attrs_post_init__(self) -> None:
        self.token_id = token_id(self.token)
        self.user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "emulator:" + self.token))

    def refresh(self, now: float) -> None:
        if now - self.window_started >= self.window_seconds:
            self.window_started = now
            self.remaining = self.quota_total

    def charge(self, cost: int, now: float) -> int:
        """Take up to ``cost`` queries; return how many were taken (0 = empty).

        A chat that costs more than what is left still runs and drains the
        window, so "empty" always means ``remainingQueries == 0``.
        """
        self.refresh(now)
        taken = min(cost, self.remaining)
        self.remaining -= taken
        return taken

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.window_started + self.window_seconds - now))

    def rate_limits(self, now: float) -> dict[str, Any]:
        self.refresh(now)
        return {
            "windowSizeSeconds": self.window_seconds,
            "remainingQueries": self.remaining,
            "totalQueries": self.quota_total,
            "remainingTokens": self.remaining,
            "lowEffortRateLimits": None,
            "highEffortRateLimits": None,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "pool": self.pool,
            "quota": self.quota_total,
            "remaining": self.remaining,
            "window_seconds": self.window_seconds,
            "blocked": self.blocked,
            "user_id": self.user_id,
        }


@attrs.define
class Fault:
    """A scripted failure for the next ``times`` matching requests.

    ``times`` of ``None`` keeps the fault until it is cleared. ``token_id`` of
    ``None`` matches any token.
    """

    id: int
    kind: str
    token_id: str | None = None
    endpoint: str = "chat"
    times: int | None = 1
    #: Answer tokens sent before the error line, the cut or the stall.
    after_tokens: int = 2
    code: int | None = None
    message: str | None = None
    #: How long a stall lasts at most.
    seconds: float = 60.0
    #: ``cut`` only: reset the connection instead of ending the body cleanly.
    abort: bool = False
    #: ``429`` only: the ``remainingQueries`` to report (default: what is left).
    remaining: int | None = None
    hits: int = 0

    def __attrs_post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; known: {sorted(FAULT_KINDS)}"
            )
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}")
        stalls_account_call = (
            self.kind == "stall" and self.endpoint in _STALLABLE_ENDPOINTS
        )
        if (
            self.kind in STREAM_FAULT_KINDS
            and self.endpoint not in _CHAT_ENDPOINTS
            and not stalls_account_call
        ):
            raise ValueError(
                f"fault {self.kind!r} only applies to the chat and continue endpoints"
            )
        if self.kind in IMAGINE_FAULT_KINDS and self.endpoint != "imagine":
            raise ValueError(f"fault {self.kind!r} only applies to endpoint imagine")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be at least 1 or null, got {self.times}")
        if self.after_tokens < 0 or self.seconds < 0:
            raise ValueError("after_tokens and seconds must be non-negative")

    def matches(self, tid: str | None, endpoint: str, stream: bool) -> bool:
        return (
            (self.kind in STREAM_FAULT_KINDS | IMAGINE_FAULT_KINDS) == stream
            and (self.token_id is None or self.token_id == tid)
            and self.endpoint in ("any", endpoint)
        )

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class Upload:
    """A file stored by ``upload-file``."""

    file_id: str
    token_id: str
    file_name: str
    mime_type: str
    data: bytes
    file_uri: str


@attrs.define
class Conversation:
    """A conversation ``/new`` opened, for replies to it.

    ``response_ids`` holds every response of it, the user turns' and the
    model's; a reply must name one of them as ``parentResponseId``.
    """

    conversation_id: str
    token_id: str
    response_ids: list[str] = attrs.Factory(list)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(eq=False)
class RequestRecord:
    """What the emulator saw of one upstream request and how it ended.

    ``outcome`` is ``pending`` while a stream is open, then ``completed``
    (the emulator sent all it meant to, faults included), ``cancelled`` (the
    client went away first) or ``rejected`` (an HTTP error was returned).
    """

    seq: int
    method: str
    path: str
    token_id: str | None
    body: Any
    user_agent: str | None
    statsig_present: bool
    cookie_names: list[str]
    started_at: float = attrs.field(factory=time.time)
    ended_at: float | None = None
    status: int | None = None
    outcome: str = "pending"
    fault: str | None = None
    reason: str | None = None
    charged: int = 0
    conversation_id: str | None = None
    response_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class EmulatorState:
    """The mutable world of one emulator.

    Args:
        config: global options; a default :class:`EmulatorConfig` if omitted.
        accounts: tokens to register as basic accounts right away.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, accounts: Iterable[str] = ()
    ) -> None:
        self.config = config or EmulatorConfig()
        self.accounts: dict[str, Account] = {}
        self.faults: list[Fault] = []
        self.uploads: dict[str, Upload] = {}
        self.conversations: collections.OrderedDict[str, Conversation] = (
            collections.OrderedDict()
        )
        self.log: collections.deque[RequestRecord] = collections.deque(
            maxlen=self.config.log_limit
        )
        self._seq = 0
        self._fault_seq = 0
        self._changed = trio.Event()
        for token in accounts:
            self.add_account(token)

    def reset(self) -> None:
        """Forget accounts, faults, uploads, conversations and the log; restore
        default options."""
        self.config = EmulatorConfig()
        self.accounts.clear()
        self.faults.clear()
        self.uploads.clear()
        self.conversations.clear()
        self.log = collections.deque(maxlen=self.config.log_limit)
        self._notify()

    def configure(self, changes: dict[str, Any]) -> EmulatorConfig:
        """Change global options; see :meth:`EmulatorConfig.update`."""
        self.config.update(changes)
        if self.log.maxlen != self.config.log_limit:
            self.log = collections.deque(self.log, maxlen=self.config.log_limit)
        self._trim_conversations()
        return self.config

    # -- accounts ------------------------------------------------------------

    def add_account(
        self,
        token: str,
        *,
        pool: str = "basic",
        quota: int | None = None,
        remaining: int | None = None,
        window_seconds: int | None = None,
        blocked: bool = False,
    ) -> Account:
        """Add an account, replacing any account with the same token.

        Quota and window default to the pool's numbers in :data:`POOL_DEFAULTS`;
        ``remaining`` defaults to the full quota.
        """
        if not token:
            raise ValueError("token must be non-empty")
        default_total, default_window = POOL_DEFAULTS.get(pool, POOL_DEFAULTS["basic"])
        total = default_total if quota is None else quota
        left = total if remaining is None else remaining
        window = default_window if window_seconds is None else window_seconds
        if total < 0 or left < 0 or window < 1:
            raise ValueError("quota and remaining must be >= 0, window_seconds >= 1")
        account = Account(token, pool, total, left, window, blocked)
        self.accounts[token] = account
        return account

    def remove_account(self, tid: str) -> bool:
        for token, account in self.accounts.items():
            if account.token_id == tid:
                del self.accounts[token]
                return True
        return False

    def lookup(self, token: str) -> Account | None:
        account = self.accounts.get(token)
        if account is None and self.config.auto_register and token:
            account = self.add_account(token)
        return account

    # -- conversations -------------------------------------------------------

    def open_conversation(
        self, conversation_id: str, tid: str, response_ids: Iterable[str]
    ) -> Conversation:
        """Remember a new conversation of account ``tid``."""
        conversation = Conversation(conversation_id, tid, list(response_ids))
        self.conversations[conversation_id] = conversation
        self._trim_conversations()
        return conversation

    def conversation(self, conversation_id: str, tid: str) -> Conversation | None:
        """The conversation if account ``tid`` owns it; a use keeps it longer."""
        conversation = self.conversations.get(conversation_id)
        if conversation is None or conversation.token_id != tid:
            return None
        self.conversations.move_to_end(conversation_id)
        return conversation

    def forget_conversations(self, conversation_id: str | None = None) -> bool:
        """Forget one conversation, or all; False if the one was unknown."""
        if conversation_id is None:
            self.conversations.clear()
            return True
        return self.conversations.pop(conversation_id, None) is not None

    def _trim_conversations(self) -> None:
        while len(self.conversations) > self.config.conversation_limit:
            self.conversations.popitem(last=False)

    # -- faults --------------------------------------------------------------

    def add_fault(self, kind: str, *, token: str | None = None, **params: Any) -> Fault:
        """Script a fault; see :class:`Fault` for the parameters."""
        self._fault_seq += 1
        tid = None if token is None else token_id(token)
        fault = Fault(self._fault_seq, kind, tid, **params)
        self.faults.append(fault)
        return fault

    def clear_faults(self, fault_id: int | None = None) -> None:
        self.faults = [
            f for f in self.faults if fault_id is not None and f.id != fault_id
        ]

    def take_fault(
        self, tid: str | None, endpoint: str, *, stream: bool
    ) -> Fault | None:
        """Consume one use of the oldest fault matching this request."""
        for fault in self.faults:
            if fault.matches(tid, endpoint, stream):
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                return fault
        return None

    # -- request log ---------------------------------------------------------

    def open_record(self, **fields: Any) -> RequestRecord:
        self._seq += 1
        record = RequestRecord(self._seq, **fields)
        self.log.append(record)
        self._notify()
        return record

    def close_record(
        self,
        record: RequestRecord,
        outcome: str,
        *,
        status: int | None = None,
        reason: str | None = None,
    ) -> None:
        record.outcome = outcome
        record.ended_at = time.time()
        if status is not None:
            record.status = status
        if reason is not None:
            record.reason = reason
        self._notify()

    def _notify(self) -> None:
        # Waiters sleep on the current event; replacing it after setting it
        # wakes them all once and arms the next round.
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, re-checking after each log change.

        Bound it with ``trio.move_on_after`` or ``trio.fail_after``.
        """
        while not predicate():
            await self._changed.wait()
