"""Reading ``SERVER_STORAGE_URL`` for PostgreSQL and MySQL/MariaDB.

The URL forms are the reference product's (SQLAlchemy style, so a driver may
follow the dialect after a ``+``): ``postgresql://``, ``postgres://``,
``pgsql://``, ``postgresql+asyncpg://`` for PostgreSQL and ``mysql://``,
``mariadb://``, ``mysql+aiomysql://`` for MySQL/MariaDB. Whatever driver a URL
names, the backend uses its own (psycopg 3 and PyMySQL); the driver part only
says which dialect is meant.

SSL is described by query options, folded into one :class:`ConnectionSpec`
whatever their spelling: ``sslmode`` / ``ssl-mode`` / ``ssl_mode`` (libpq
names such as ``require`` and ``verify-full``, or MySQL names such as
``REQUIRED`` and ``VERIFY_IDENTITY``), ``ssl=true|false|require``, and the
files ``ssl_ca`` / ``sslrootcert``, ``ssl_cert`` / ``sslcert``, ``ssl_key`` /
``sslkey``. An option we do not know is an error rather than silently
ignored, so a typo in a TLS setting cannot turn TLS off.
"""

from __future__ import annotations

import enum
import urllib.parse

import attrs

from grok2api.errors import ConfigError

__all__ = ["ConnectionSpec", "Dialect", "SslMode", "parse_storage_url"]


class Dialect(enum.Enum):
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"


class SslMode(enum.Enum):
    """How hard a connection insists on TLS, in libpq's terms."""

    DISABLE = "disable"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


@attrs.frozen
class ConnectionSpec:
    """Where and how to connect; the password never appears in its repr."""

    dialect: Dialect
    host: str
    port: int
    user: str
    password: str = attrs.field(repr=False)
    database: str
    ssl_mode: SslMode | None = None
    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None

    def redacted(self) -> str:
        """The URL with its password hidden, for logs and error messages."""
        auth = f"{self.user}:***@" if self.password else f"{self.user}@"
        return f"{self.dialect.value}://{auth}{self.host}:{self.port}/{self.database}"


_DIALECTS = {
    "postgresql": Dialect.POSTGRESQL,
    "postgres": Dialect.POSTGRESQL,
    "pgsql": Dialect.POSTGRESQL,
    "mysql": Dialect.MYSQL,
    "mariadb": Dialect.MYSQL,
}
_DEFAULT_PORTS = {Dialect.POSTGRESQL: 5432, Dialect.MYSQL: 3306}

_SSL_MODES = {
    # libpq spellings
    "disable": SslMode.DISABLE,
    "allow": SslMode.PREFER,
    "prefer": SslMode.PREFER,
    "require": SslMode.REQUIRE,
    "verify-ca": SslMode.VERIFY_CA,
    "verify-full": SslMode.VERIFY_FULL,
    # MySQL spellings (compared lower-case, ``_`` as ``-``)
    "disabled": SslMode.DISABLE,
    "preferred": SslMode.PREFER,
    "required": SslMode.REQUIRE,
    "verify-identity": SslMode.VERIFY_FULL,
    # ``ssl=`` booleans
    "true": SslMode.REQUIRE,
    "1": SslMode.REQUIRE,
    "yes": SslMode.REQUIRE,
    "on": SslMode.REQUIRE,
    "false": SslMode.DISABLE,
    "0": SslMode.DISABLE,
    "no": SslMode.DISABLE,
    "off": SslMode.DISABLE,
}
_MODE_KEYS = frozenset({"sslmode", "ssl-mode", "ssl_mode", "ssl"})
_FILE_KEYS = {
    "ssl_ca": "ssl_ca",
    "ssl-ca": "ssl_ca",
    "sslca": "ssl_ca",
    "sslrootcert": "ssl_ca",
    "ssl_cert": "ssl_cert",
    "ssl-cert": "ssl_cert",
    "sslcert": "ssl_cert",
    "ssl_key": "ssl_key",
    "ssl-key": "ssl_key",
    "sslkey": "ssl_key",
}
# Accepted for compatibility and ignored: the backend always speaks utf8mb4.
_IGNORED_KEYS = frozenset({"charset"})


def parse_storage_url(url: str) -> ConnectionSpec:
    """Read a PostgreSQL or MySQL/MariaDB storage URL.

    Raises:
        ConfigError: the scheme, port, database name or an option is wrong;
            every problem found is listed.
    """
    problems: list[str] = []
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower().split("+", 1)[0]
    dialect = _DIALECTS.get(scheme)
    if dialect is None:
        raise ConfigError(
            [
                "SERVER_STORAGE_URL: expected postgresql://, pgsql://, mysql:// "
                f"or mariadb://, got {parts.scheme or 'no scheme'}://…"
            ]
        )
    try:
        port = parts.port or _DEFAULT_PORTS[dialect]
    except ValueError:
        problems.append("SERVER_STORAGE_URL: the port is not a number")
        port = _DEFAULT_PORTS[dialect]
    database = urllib.parse.unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        problems.append(
            "SERVER_STORAGE_URL: name one database after the host, "
            "e.g. …@db.example:5432/grok2api"
        )
    options = _read_options(parts.query, problems)
    if problems:
        raise ConfigError(problems)
    return ConnectionSpec(
        dialect=dialect,
        host=parts.hostname or "localhost",
        port=port,
        user=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""),
        database=database,
        **options,  # type: ignore[arg-type]
    )


def _read_options(query: str, problems: list[str]) -> dict[str, object]:
    options: dict[str, object] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        name = key.lower()
        if name in _MODE_KEYS:
            mode = _SSL_MODES.get(value.strip().lower().replace("_", "-"))
            if mode is None:
                problems.append(
                    f"SERVER_STORAGE_URL: {key}={value!r} is not an SSL mode; use "
                    "disable, prefer, require, verify-ca or verify-full"
                )
            options["ssl_mode"] = mode
        elif name in _FILE_KEYS:
            options[_FILE_KEYS[name]] = value
        elif name not in _IGNORED_KEYS:
            problems.append(
                f"SERVER_STORAGE_URL: unknown option {key!r}; the SQL storage "
                "understands sslmode, ssl, ssl_ca, ssl_cert and ssl_key"
            )
    # A CA file given on its own means the operator wants it checked.
    if "ssl_ca" in options and options.get("ssl_mode") is None:
        options["ssl_mode"] = SslMode.VERIFY_CA
    return options
