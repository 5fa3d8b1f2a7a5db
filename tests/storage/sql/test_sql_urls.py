"""Every storage URL form of the reference, read into one connection spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from grok2api_storage_sql import (
    STORAGE_TYPES,
    ConnectionSpec,
    Dialect,
    SqlStorage,
    SslMode,
    parse_storage_url,
)
from grok2api_storage_sql.hooks import register_storage_backends

from grok2api.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "dialect", "port"),
    [
        ("postgresql://u:p@db:6543/g", Dialect.POSTGRESQL, 6543),
        ("postgres://u:p@db/g", Dialect.POSTGRESQL, 5432),
        ("postgresql+asyncpg://u:p@db/g", Dialect.POSTGRESQL, 5432),
        ("pgsql://u:p@db/g", Dialect.POSTGRESQL, 5432),
        ("mysql://u:p@db/g", Dialect.MYSQL, 3306),
        ("mysql+aiomysql://u:p@db:3307/g", Dialect.MYSQL, 3307),
        ("mariadb://u:p@db/g", Dialect.MYSQL, 3306),
    ],
)
def test_sql_url_forms(url: str, dialect: Dialect, port: int) -> None:
    spec = parse_storage_url(url)
    assert (spec.dialect, spec.host, spec.port) == (dialect, "db", port)
    assert (spec.user, spec.password, spec.database) == ("u", "p", "g")
    assert spec.ssl_mode is None


def test_sql_url_decodes_credentials_and_hides_the_password() -> None:
    spec = parse_storage_url("postgresql://us%40er:p%3Aw%2Fd@[::1]:5433/my%20db")
    assert (spec.user, spec.password, spec.database) == ("us@er", "p:w/d", "my db")
    assert spec.host == "::1"
    assert "p:w/d" not in repr(spec) and "p:w/d" not in spec.redacted()


@pytest.mark.parametrize(
    ("query", "mode"),
    [
        ("sslmode=require", SslMode.REQUIRE),
        ("sslmode=verify-full", SslMode.VERIFY_FULL),
        ("ssl-mode=REQUIRED", SslMode.REQUIRE),
        ("ssl_mode=VERIFY_IDENTITY", SslMode.VERIFY_FULL),
        ("ssl-mode=DISABLED", SslMode.DISABLE),
        ("ssl=true", SslMode.REQUIRE),
        ("ssl=false", SslMode.DISABLE),
        ("ssl=require", SslMode.REQUIRE),
        ("sslmode=prefer", SslMode.PREFER),
        ("ssl_ca=/ca.pem", SslMode.VERIFY_CA),
    ],
)
def test_sql_url_ssl_options(query: str, mode: SslMode) -> None:
    for scheme in ("postgresql", "mysql"):
        spec = parse_storage_url(f"{scheme}://u:p@db/g?{query}")
        assert spec.ssl_mode is mode, (scheme, query)


def test_sql_url_ssl_files() -> None:
    spec = parse_storage_url(
        "mysql://u@db/g?ssl-mode=VERIFY_CA&ssl-ca=/ca.pem&ssl_cert=/c.pem&sslkey=/k.pem"
    )
    assert (spec.ssl_ca, spec.ssl_cert, spec.ssl_key) == ("/ca.pem", "/c.pem", "/k.pem")
    spec = parse_storage_url("postgresql://u@db/g?sslrootcert=/root.pem")
    assert (spec.ssl_mode, spec.ssl_ca) == (SslMode.VERIFY_CA, "/root.pem")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://db/0", "expected postgresql"),
        ("postgresql://u:p@db:port/g", "port"),
        ("postgresql://u:p@db", "name one database"),
        ("mysql://u:p@db/g?sslmode=sometimes", "not an SSL mode"),
        ("mysql://u:p@db/g?sslmdoe=require", "unknown option 'sslmdoe'"),
    ],
)
def test_sql_url_mistakes_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_storage_url(url)
    assert problem in str(caught.value)


def test_sql_hook_registers_the_reference_type_names(tmp_path: Path) -> None:
    factories = register_storage_backends(host=None)  # type: ignore[arg-type]
    assert set(factories) == {"mysql", "mariadb", "pgsql", "postgresql"}
    assert factories == STORAGE_TYPES
    storage = factories["pgsql"]("postgres://u:p@db/g", tmp_path)
    assert isinstance(storage, SqlStorage)
    assert storage.name == "pgsql" and isinstance(storage.spec, ConnectionSpec)
    assert factories["mysql"]("mariadb://u:p@db/g", tmp_path).name == "mysql"
    with pytest.raises(ConfigError, match="make them agree"):
        factories["mysql"]("postgresql://u:p@db/g", tmp_path)
    with pytest.raises(ConfigError, match="needs a server URL"):
        factories["pgsql"]("", tmp_path)
