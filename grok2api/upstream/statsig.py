"""The ``x-statsig-id`` anti-bot header.

The web app computes this value with the Statsig SDK. When the SDK fails, it
sends the base64 of a short error string instead, and the upstream accepts
that fallback. We imitate the fallback: a JavaScript ``TypeError`` message
behind a prefix. The prefix was ``e:`` until mid-2026, when the anti-bot layer
started refusing it with HTTP 403; ``x1:`` is what it accepts since.
"""

from __future__ import annotations

import base64
import random
import string

__all__ = ["FIXED_STATSIG_MESSAGE", "fixed_statsig_id", "random_statsig_id"]

#: The message the fixed (non-dynamic) mode sends, without its prefix.
FIXED_STATSIG_MESSAGE = (
    "TypeError: Cannot read properties of undefined (reading 'childNodes')"
)

# Not a secret, only noise that keeps consecutive values from being equal.
_rng = random.Random()


def _encode(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def random_statsig_id(prefix: str = "x1:", rng: random.Random | None = None) -> str:
    """Return a fresh statsig value in one of the two ``TypeError`` forms.

    Args:
        prefix: ``"x1:"`` (current) or ``"e:"`` (the 2026-02 reference).
        rng: the random source; tests pass a seeded one.

    Returns:
        The base64 text to send as ``x-statsig-id``.
    """
    rng = rng or _rng
    if rng.random() < 0.5:
        key = "".join(rng.choices(string.ascii_lowercase + string.digits, k=5))
        message = (
            f"TypeError: Cannot read properties of null (reading 'children['{key}']')"
        )
    else:
        name = "".join(rng.choices(string.ascii_lowercase, k=10))
        message = f"TypeError: Cannot read properties of undefined (reading '{name}')"
    return _encode(prefix + message)


def fixed_statsig_id(prefix: str = "x1:") -> str:
    """Return the one constant statsig value used when dynamic mode is off."""
    return _encode(prefix + FIXED_STATSIG_MESSAGE)
