"""Small named values in SQL (the admin password hash, the session signing
key), shared by every worker.

Writing one bumps the change counter in the same transaction. Storing a value
only when none exists is an insert that skips an existing name: when workers
race, the database's primary key lets exactly one insert through, and the
others then read the winner's value.
"""

from __future__ import annotations

from .database import Driver, Session
from .tokens import bump_change_version

__all__ = ["get_value", "put_value", "put_value_if_absent"]


def get_value(session: Session, name: str) -> str | None:
    row = session.one(
        "SELECT content FROM named_values WHERE name = %(name)s", {"name": name}
    )
    return None if row is None else str(row["content"])


def put_value(session: Session, driver: Driver, name: str, value: str) -> None:
    with session.transaction():
        session.execute(
            "INSERT INTO named_values (name, content) VALUES (%(name)s, %(value)s)"
            f"{driver.on_conflict_update('name')}"
            f"content = {driver.inserted('content')}",
            {"name": name, "value": value},
        )
        bump_change_version(session)


def put_value_if_absent(session: Session, driver: Driver, name: str, value: str) -> str:
    params = {"name": name, "value": value}
    with session.transaction():
        # A racing insert of the same name makes this one wait for it to
        # commit, then skip; the read below then sees the winner's value.
        if session.execute(
            driver.ignore_duplicates(
                "INSERT INTO named_values (name, content) VALUES (%(name)s, %(value)s)"
            ),
            params,
        ):
            bump_change_version(session)
            return value
        row = session.one(
            "SELECT content FROM named_values WHERE name = %(name)s", params
        )
    assert row is not None  # names are never deleted
    return str(row["content"])
