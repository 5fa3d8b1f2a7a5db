"""The birth dates operators record for their tokens' accounts.

Some account settings (NSFW content) need the account holder's birth date
upstream. The gateway never makes one up: the operator records the holder's
own date per token, and only that date is ever sent. A birth date is
personal data, so it lives in storage as a named value per token id, which
:class:`~grok2api.security.sealing.SealedStorage` seals at rest when
``security.secret_key`` is set, and it never appears in a log line.
"""

from __future__ import annotations

import datetime

from grok2api.storage import Storage

__all__ = ["BirthDates", "parse_birth_date"]

#: The youngest and oldest age an account holder may plausibly have.
MIN_AGE = 13
MAX_AGE = 120

_PREFIX = "birth_date:"


def _age(born: datetime.date, today: datetime.date) -> int:
    before_birthday = (today.month, today.day) < (born.month, born.day)
    return today.year - born.year - before_birthday


def parse_birth_date(text: object, today: datetime.date) -> datetime.date:
    """Check an operator's ``YYYY-MM-DD`` birth date.

    Raises:
        ValueError: not a real calendar date in that form, in the future, or
            an age outside 13 to 120 years; the message never repeats the
            date.
    """
    if not isinstance(text, str) or len(text) != 10 or not text.isascii():
        raise ValueError("the birth date must be a string YYYY-MM-DD")
    try:
        born = datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError("the birth date is not a real YYYY-MM-DD date") from None
    if born > today:
        raise ValueError("the birth date is in the future")
    age = _age(born, today)
    if not MIN_AGE <= age <= MAX_AGE:
        raise ValueError(
            f"the birth date gives an age outside {MIN_AGE} to {MAX_AGE} years"
        )
    return born


class BirthDates:
    """Birth dates by token id, kept as storage named values.

    Storage has no way to delete a named value, so forgetting a date stores
    an empty one, which reads as no date. TODO: every write moves the
    storage's change version, so each recorded date makes every worker
    reload its settings once; harmless at operator pace, wasteful for a bulk
    import of thousands of dates.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def get(self, token_id: str) -> datetime.date | None:
        stored = await self._storage.get_value(_PREFIX + token_id)
        if not stored:
            return None
        try:
            return datetime.date.fromisoformat(stored)
        except ValueError:
            return None

    async def put(self, token_id: str, born: datetime.date) -> None:
        await self._storage.put_value(_PREFIX + token_id, born.isoformat())

    async def forget(self, token_id: str) -> bool:
        """Forget the date; False when there was none."""
        if await self.get(token_id) is None:
            return False
        await self._storage.put_value(_PREFIX + token_id, "")
        return True
