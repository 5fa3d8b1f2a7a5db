"""``grok2api storage migrate`` and ``grok2api import-reference``, run as the
operator runs them, against real local, Redis and PostgreSQL storage."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from grok2api_storage_local import create_local_storage
from grok2api_storage_redis import create_redis_storage
from grok2api_storage_sql import SqlStorage, parse_storage_url

from grok2api.cli import main
from grok2api.cli.storage_cmd import _Progress, storage_type_for
from grok2api.security.keys import key_digest
from grok2api.security.passwords import verify_password
from grok2api.storage import (
    ApiKeyLimits,
    ApiKeyRecord,
    AuditEntry,
    CandidateOrder,
    ExportedToken,
    NewToken,
    StatsRow,
    Storage,
    TokenChanges,
    TokenStatus,
    token_id_for,
)
from grok2api.testing.redis_server import RedisServer, run_redis_server
from grok2api.testing.sql_servers import SqlServer, running_postgres

NOW = 1_700_000_000.0
SECRETS = ("migrate-secret-basic-1", "migrate-secret-basic-2", "migrate-secret-super")
REDIS_PASSWORD = "redis-password-4711"
OVERRIDES = {"token": {"fail_threshold": 3}, "chat": {"temporary": False}}


# -- servers and storages ---------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with run_redis_server(password=REDIS_PASSWORD) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[SqlServer]:
    with running_postgres() as server:
        yield server


_databases = iter(range(1_000_000))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A key prefix of its own, so every test starts on an empty keyspace."""
    return f"{redis_server.url}?prefix=cli{next(_databases)}:"


@pytest.fixture
def postgres_url(postgres_server: SqlServer) -> str:
    return postgres_server.create_database(f"cli{next(_databases)}")


@asynccontextmanager
async def opened(url: str, data_dir: Path) -> AsyncIterator[Storage]:
    storage: Storage
    if url.startswith("redis"):
        storage = create_redis_storage(url, data_dir)
    elif url.startswith("postgresql"):
        storage = SqlStorage(parse_storage_url(url))
    else:
        storage = create_local_storage(url, data_dir)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.aclose()


async def fill(storage: Storage) -> None:
    """Tokens with a used ledger, a cooldown, an edit, an open lease, overrides."""
    basic_1, basic_2, super_1 = (token_id_for(s) for s in SECRETS)
    await storage.add_tokens(
        [
            NewToken(SECRETS[0], "basic", 80, 80, 72000, ("nsfw",), "first"),
            NewToken(SECRETS[1], "basic", 80, 80, 72000),
            NewToken(SECRETS[2], "super", 140, 140, 7200),
        ],
        NOW,
    )
    lease = await storage.reserve(basic_1, "spent", 4, NOW + 1, NOW + 60)
    assert lease is not None
    await storage.commit(lease, NOW + 2)
    await storage.record_failure(
        basic_2, NOW + 3, reason="429", cooldown_until=NOW + 3600.5, quota=0
    )
    await storage.update_token(super_1, TokenChanges(note="vip", tags=("a", "b")), NOW)
    assert await storage.reserve(super_1, "open", 1, NOW + 4, NOW + 900) is not None
    await storage.save_config_overrides(OVERRIDES)
    await storage.add_api_keys([API_KEY_RECORD])
    await storage.record_api_key_use({API_KEY_RECORD.id: (7, NOW + 9)})
    await storage.put_value("admin.password_hash", "scrypt$stored-hash")
    await storage.add_stats(STATS)
    await storage.append_audit(AUDIT, keep=100)


API_KEY_RECORD = ApiKeyRecord(
    id="key_0123456789abcdef",
    name="team-a",
    digest="d" * 64,
    hint="g2a-abcd…wxyz",
    enabled=True,
    created_at=NOW,
    limits=ApiKeyLimits(requests_per_minute=30, models=("grok-4",)),
)
STATS = [
    StatsRow("hour", NOW - NOW % 3600, "total", "", 5, 4, 1, 250.0),
    StatsRow("day", NOW - NOW % 86400, "model", "grok-4", 5, 4, 1, 250.0),
]
AUDIT = [
    AuditEntry(
        NOW + n,
        f"req-{n}",
        "127.0.0.1",
        "team-a",
        "POST",
        "/v1/chat/completions",
        "grok-4",
        200,
        12.0,
        False,
        "abc",
        "",
    )
    for n in range(3)
]


async def shared_state(storage: Storage) -> tuple[object, ...]:
    return (
        await storage.list_api_keys(),
        await storage.get_value("admin.password_hash"),
        await storage.read_stats("hour", "total", 0),
        await storage.read_stats("day", "model", 0),
        await storage.list_audit(100),
    )


async def everything(storage: Storage) -> list[ExportedToken]:
    return await storage.export_tokens(0, 1000)


# -- running the command ----------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GROK2API_", "SERVER_"))
    }
    environ.update({"DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"})
    return environ


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m grok2api.cli`` as a deployment script would."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "grok2api.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return await trio.to_thread.run_sync(run)


async def cli_here(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The same command in this process (a subprocess costs seconds of
    imports); it runs ``trio.run`` in a worker thread, with ``env`` as the
    whole environment meanwhile."""

    def run() -> subprocess.CompletedProcess[str]:
        out, err = io.StringIO(), io.StringIO()
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(args))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())

    return await trio.to_thread.run_sync(run)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def assert_no_secret(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.stdout + result.stderr


async def migrate_twice(
    env: dict[str, str], source: str, target: str, *extra: str, here: bool = True
) -> tuple[str, str]:
    run = cli_here if here else cli
    first = await run(
        env, "storage", "migrate", "--from", source, "--to", target, *extra
    )
    second = await run(
        env, "storage", "migrate", "--from", source, "--to", target, *extra
    )
    hidden = (*SECRETS, REDIS_PASSWORD, "test-password-0123")
    assert_no_secret(first, *hidden)
    assert_no_secret(second, *hidden)
    return ok(first), ok(second)


# -- storage migrate --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://h:6379/0", "redis"),
        ("rediss://h/1", "redis"),
        ("postgresql://u:p@h/db", "pgsql"),
        ("postgres://h/db", "pgsql"),
        ("pgsql://h/db", "pgsql"),
        ("postgresql+asyncpg://h/db", "pgsql"),
        ("mysql://h/db", "mysql"),
        ("mariadb://h/db", "mysql"),
        ("mysql+aiomysql://h/db", "mysql"),
        ("sqlite:///data/x.db", "local"),
        ("./data", "local"),
        ("ftp://h/x", None),
    ],
)
def test_storage_type_for_reads_the_scheme(url: str, kind: str | None) -> None:
    assert storage_type_for(url) == kind


async def test_migrate_local_to_local_copies_ledger_and_config(
    env: dict[str, str], tmp_path: Path
) -> None:
    source, target = tmp_path / "old", tmp_path / "new" / "moved.sqlite3"
    async with opened("", source) as storage:
        await fill(storage)
        expected = await everything(storage)
        expected_shared = await shared_state(storage)

    first, second = await migrate_twice(
        env, str(source), f"sqlite:///{target}", here=False
    )

    assert "tokens: 3 copied (3 new, 0 updated, 0 unchanged)" in first
    assert "config: 2 runtime override key(s) copied" in first
    assert "tokens: 3 copied (0 new, 0 updated, 3 unchanged)" in second
    async with opened(str(target), target.parent) as storage:
        assert await everything(storage) == expected
        assert await storage.load_config_overrides() == OVERRIDES
        super_record = await storage.get_token(token_id_for(SECRETS[2]))
        assert super_record is not None and super_record.reserved == 0
        # Keys with their use counts, the admin password hash, statistics and
        # the audit log, exactly once although the migration ran twice.
        assert await shared_state(storage) == expected_shared
    assert "api keys: 1 copied" in first and "api keys: 0 copied" in second
    assert "statistics: 0 row(s)" in second and "audit log: 0 entries" in second


async def test_migrate_updates_what_changed_on_the_source(
    env: dict[str, str], tmp_path: Path
) -> None:
    source, target = tmp_path / "old", tmp_path / "new"
    async with opened("", source) as storage:
        await fill(storage)
    ok(
        await cli_here(
            env, "storage", "migrate", "--from", str(source), "--to", str(target)
        )
    )
    async with opened("", source) as storage:
        token_id = token_id_for(SECRETS[1])
        await storage.update_token(token_id, TokenChanges(reset=True), NOW + 5)
        expected = await everything(storage)

    again = ok(
        await cli_here(
            env, "storage", "migrate", "--from", str(source), "--to", str(target)
        )
    )

    assert "(0 new, 1 updated, 2 unchanged)" in again
    async with opened("", target) as storage:
        assert await everything(storage) == expected


async def test_migrate_local_to_redis(
    env: dict[str, str], tmp_path: Path, redis_url: str
) -> None:
    source = tmp_path / "old"
    async with opened("", source) as storage:
        await fill(storage)
        expected = await everything(storage)

    first, second = await migrate_twice(env, str(source), redis_url)

    assert "to redis redis://" in first and "(3 new, 0 updated, 0 unchanged)" in first
    assert "(0 new, 0 updated, 3 unchanged)" in second
    async with opened(redis_url, tmp_path) as storage:
        assert await everything(storage) == expected
        assert await storage.load_config_overrides() == OVERRIDES
        # The copied tokens are in the pool indexes: the cooling one is not
        # offered, the others are.
        lease = await storage.lease(
            ["basic"],
            CandidateOrder.MOST_QUOTA,
            None,
            1,
            frozenset(),
            NOW + 10,
            NOW + 70,
            "x",
        )
        assert lease is not None and lease.token_id == token_id_for(SECRETS[0])


async def test_migrate_redis_to_postgres(
    env: dict[str, str], tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    async with opened(redis_url, tmp_path) as storage:
        await fill(storage)
        expected = await everything(storage)

    first, second = await migrate_twice(
        env, redis_url, postgres_url.replace("postgresql://", "pgsql://")
    )

    assert "to pgsql pgsql://grok2api:" in first
    assert "(3 new, 0 updated, 0 unchanged)" in first
    assert "(0 new, 0 updated, 3 unchanged)" in second
    async with opened(postgres_url, tmp_path) as storage:
        assert await everything(storage) == expected
        assert await storage.load_config_overrides() == OVERRIDES


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run a command in this process; it must refuse with one message."""
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_migrate_refuses_bad_places_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate = ("storage", "migrate", "--from")
    missing = str(tmp_path / "missing")
    assert "does not exist" in refused(capsys, *migrate, missing, "--to", "x")
    assert "--from-type" in refused(capsys, *migrate, "ftp://h/x", "--to", "x")
    here = str(tmp_path)
    assert "same storage" in refused(capsys, *migrate, here, "--to", here)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    terminal = _Terminal()
    bar = _Progress(4, terminal)
    bar.advance(2)
    bar.advance(2)
    bar.finish()
    assert "\r[" + "#" * 15 + "." * 15 + "] 2/4 tokens" in terminal.getvalue()
    assert terminal.getvalue().endswith("] 4/4 tokens\n")

    log = io.StringIO()
    lines = _Progress(4, log, every=0.0)
    lines.advance(2)
    lines.finish()
    assert log.getvalue() == "copied 2/4 tokens\ncopied 2/4 tokens\n"


# -- import-reference -------------------------------------------------------

REFERENCE_SECRETS = (
    "ref-basic-active-0001",
    "ref-basic-expired-02",
    "ref-super-cooling-3",
    "ref-super-disabled-4",
    "reference-admin-pass",
    "sk-reference-client",
    "sk-managed-1",
)


@pytest.fixture
def reference_dir(tmp_path: Path) -> Path:
    """A data directory as the FastAPI reference product leaves it."""
    folder = tmp_path / "reference" / "data"
    folder.mkdir(parents=True)
    absent = {"last_fail_at": None, "last_fail_reason": None, "cooldown_until": None}
    tokens = {
        "ssoBasic": [
            {
                "token": "ref-basic-active-0001",
                "status": "active",
                "quota": 61,
                "created_at": 1_699_990_000_000,
                "last_used_at": 1_699_999_000_500,
                "use_count": 19,
                "fail_count": 0,
                "last_sync_at": 1_699_998_000_000,
                "cooldown_reason": None,
                "tags": ["nsfw"],
                "note": "team A",
                "last_asset_clear_at": None,
                **absent,
            },
            {
                "token": "sso=ref-basic-expired-02",
                "status": "expired",
                "quota": 80,
                "fail_count": 5,
                "last_fail_at": 1_699_999_500_000,
                "last_fail_reason": "401 Unauthorized",
                "created_at": 1_699_990_001_000,
            },
            {"note": "an entry without its token"},
            {"token": "ref-bad-quota", "quota": "lots"},
        ],
        "ssoSuper": [
            {
                "token": "ref-super-cooling-3",
                "status": "cooling",
                "quota": 0,
                "cooldown_until": 1_700_036_000_000,
                "cooldown_until_seq": None,
                "cooldown_reason": "rate_limit_no_quota",
                "created_at": 1_699_990_002_000,
                "use_count": 140,
            },
            {"token": "ref-super-disabled-4", "status": "disabled"},
        ],
    }
    (folder / "token.json").write_text(json.dumps(tokens, indent=2))
    (folder / "config.toml").write_text(
        """\
[app]
app_key = "reference-admin-pass"
api_key = "sk-reference-client"
public_enabled = false

[proxy]
base_proxy_url = "http://127.0.0.1:8899"

[chat]
timeout = 90

[token]
fail_threshold = 3

[voice]
timeout = 30

[made_up]
knob = 1
"""
    )
    keys = [
        {
            "key": "sk-managed-1",
            "name": "ci",
            "created_at": 1_699_990_000,
            "is_active": True,
            "usage_count": 3,
            "last_used_at": None,
        },
        {"key": "sk-managed-2", "name": "old", "is_active": False},
    ]
    (folder / "api_keys.json").write_text(json.dumps(keys))
    return folder


async def test_import_reference_brings_tokens_config_and_reports_api_keys(
    env: dict[str, str], reference_dir: Path, tmp_path: Path
) -> None:
    result = await cli(env, "import-reference", str(reference_dir))

    out = ok(result)
    assert_no_secret(result, *REFERENCE_SECRETS)
    assert "tokens: 4 imported (4 new, 0 updated, 0 unchanged)" in out
    assert "tokens: 2 skipped as malformed" in out
    assert "ssoBasic[2]: expected an object with a 'token' string" in out
    assert "ssoBasic[3]: 'quota' must be a non-negative number" in out
    assert "config: 4 key(s) stored as runtime overrides" in out
    assert "renamed app.app_key -> app.app_password" in out
    assert "ignored app.public_enabled (not used by grok2api)" in out
    assert "ignored made_up: unknown section" in out
    assert "app_key is now the stored admin password" in out
    assert "api keys: 2 imported as managed keys (0 already present)" in out

    async with opened("", tmp_path / "data") as storage:
        records = {t.secret: t for t in await everything(storage)}
        overrides = await storage.load_config_overrides()
        keys = {key.name: key for key in await storage.list_api_keys()}
        stored_password = await storage.get_value("admin.password_hash")
    assert records["ref-basic-active-0001"] == ExportedToken(
        secret="ref-basic-active-0001",
        pool="basic",
        status=TokenStatus.ACTIVE,
        quota=61,
        quota_total=80,
        window_seconds=72000,
        last_used_at=1_699_999_000.5,
        use_count=19,
        created_at=1_699_990_000.0,
        last_sync_at=1_699_998_000.0,
        tags=("nsfw",),
        note="team A",
    )
    expired = records["ref-basic-expired-02"]
    assert (expired.status, expired.fail_count) == (TokenStatus.INVALID, 5)
    assert expired.last_fail_at == 1_699_999_500.0
    cooling = records["ref-super-cooling-3"]
    assert (cooling.pool, cooling.status, cooling.quota) == (
        "super",
        TokenStatus.COOLING,
        0,
    )
    assert cooling.cooldown_until == 1_700_036_000.0
    assert cooling.cooldown_reason == "rate_limit_no_quota"
    disabled = records["ref-super-disabled-4"]
    assert (disabled.status, disabled.quota) == (TokenStatus.DISABLED, 140)
    assert verify_password("reference-admin-pass", stored_password or "")
    assert (keys["ci"].enabled, keys["ci"].use_count) == (True, 3)
    assert keys["ci"].created_at == 1_699_990_000
    assert keys["ci"].digest == key_digest("sk-managed-1")
    assert keys["old"].enabled is False
    assert overrides == {
        "app": {
            "api_key": "sk-reference-client",
        },
        "network": {"base_proxy_url": "http://127.0.0.1:8899", "timeout": 90.0},
        "token": {"fail_threshold": 3},
    }


async def test_import_reference_twice_changes_nothing(
    env: dict[str, str], reference_dir: Path, tmp_path: Path
) -> None:
    ok(await cli_here(env, "import-reference", str(reference_dir)))
    async with opened("", tmp_path / "data") as storage:
        before = (await everything(storage), await storage.change_version())

    again = ok(await cli_here(env, "import-reference", str(reference_dir)))

    assert "tokens: 4 imported (0 new, 0 updated, 4 unchanged)" in again
    assert "already holds the reference's app_key" in again
    assert "api keys: 0 imported as managed keys (2 already present)" in again
    async with opened("", tmp_path / "data") as storage:
        assert (await everything(storage), await storage.change_version()) == before


async def test_import_reference_keeps_the_targets_admin_password(
    env: dict[str, str], reference_dir: Path, tmp_path: Path
) -> None:
    env["GROK2API_APP_APP_PASSWORD"] = "the-targets-own"

    out = ok(await cli_here(env, "import-reference", str(reference_dir)))

    assert "the target already has one" in out
    async with opened("", tmp_path / "data") as storage:
        overrides = await storage.load_config_overrides()
    assert "app_password" not in overrides["app"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("token.json", "{not json", "token.json is not valid JSON"),
        ("token.json", "[1, 2]", "is not the reference's token file"),
        ("config.toml", "[app\nx = 1", "config.toml is not valid TOML"),
        ("api_keys.json", "[{]", "api_keys.json is not valid JSON"),
    ],
)
def test_import_reference_refuses_unreadable_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str,
    message: str,
) -> None:
    (tmp_path / name).write_text(content)
    assert message in refused(capsys, "import-reference", str(tmp_path))


def test_import_reference_refuses_a_folder_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing")
    assert "is not a directory" in refused(capsys, "import-reference", missing)
    assert "holds none of token.json" in refused(
        capsys, "import-reference", str(tmp_path)
    )
