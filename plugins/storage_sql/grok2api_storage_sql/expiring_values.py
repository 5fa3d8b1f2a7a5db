"""Short-lived values in SQL (conversation bindings), shared by every worker.

A value is one row with its ``expires_at``. A read ignores a row whose time
has come on the reader's clock, and the reservation sweeper deletes such rows
(:func:`expire_values`), so they never pile up. Nothing here touches the change
counter: no worker caches these values.
"""

from __future__ import annotations

from .database import Driver, Session

__all__ = ["delete_expiring", "expire_values", "get_expiring", "put_expiring"]


def put_expiring(
    session: Session, driver: Driver, name: str, value: str, expires_at: float
) -> None:
    session.execute(
        "INSERT INTO expiring_values (name, content, expires_at) "
        "VALUES (%(name)s, %(value)s, %(expires_at)s)"
        f"{driver.on_conflict_update('name')}"
        f"content = {driver.inserted('content')}, "
        f"expires_at = {driver.inserted('expires_at')}",
        {"name": name, "value": value, "expires_at": expires_at},
    )


def get_expiring(session: Session, name: str, now: float) -> str | None:
    row = session.one(
        "SELECT content FROM expiring_values "
        "WHERE name = %(name)s AND expires_at > %(now)s",
        {"name": name, "now": now},
    )
    return None if row is None else str(row["content"])


def delete_expiring(session: Session, name: str) -> None:
    session.execute("DELETE FROM expiring_values WHERE name = %(name)s", {"name": name})


def expire_values(session: Session, now: float) -> None:
    """Delete the values that have expired by ``now``."""
    session.execute(
        "DELETE FROM expiring_values WHERE expires_at <= %(now)s", {"now": now}
    )
