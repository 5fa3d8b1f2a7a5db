"""``grok2api config show`` and ``grok2api config check``."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

import trio

from grok2api.cli.serve import read_server_options
from grok2api.config import check_settings, server_options_from_env, settings_as_dict
from grok2api.errors import ConfigError
from grok2api.gateway import check_installation, open_storage

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    config = commands.add_parser("config", help="show or check the configuration")
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show", help="print the effective settings (secrets redacted)"
    )
    show.add_argument(
        "--no-storage",
        action="store_true",
        help="ignore runtime overrides kept in storage",
    )
    show.set_defaults(run=_show)
    check = actions.add_parser(
        "check", help="validate the settings and the storage connection"
    )
    check.set_defaults(run=_check)


async def _overrides() -> dict[str, Any]:
    options = server_options_from_env(os.environ)
    base = check_settings(options.data_dir, os.environ).settings
    async with open_storage(options, base) as (storage, _):
        return await storage.load_config_overrides()


def _show(args: argparse.Namespace) -> int:
    options = server_options_from_env(os.environ)
    overrides = {} if args.no_storage else trio.run(_overrides)
    report = check_settings(options.data_dir, os.environ, overrides)
    print(
        json.dumps(
            settings_as_dict(report.settings, redact=True), indent=2, default=str
        )
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    options = read_server_options(dict(os.environ))
    overrides = trio.run(_overrides)
    report = check_settings(options.data_dir, os.environ, overrides)
    # What serve refuses, check refuses: a strategy or backend not installed,
    # a host that does not resolve (a port in use is a matter of the moment).
    check_installation(options, report.settings)
    try:
        socket.getaddrinfo(options.host, options.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(
            [f"SERVER_HOST: {options.host!r} does not resolve ({reason})"]
        ) from None
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"configuration OK (storage {options.storage_type}, data in {options.data_dir})"
    )
    return 0
