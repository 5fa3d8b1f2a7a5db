"""``grok2api admin set-password|password-source``.

The stored admin password is a scrypt hash in the configured storage; every
running worker picks a new one up within about a second (the change version
moves) and every open admin session ends with it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from functools import partial
from typing import Any

import trio

from grok2api.config import ServerOptions, load_settings, server_options_from_env
from grok2api.config.environment import variable_for
from grok2api.errors import Grok2APIError
from grok2api.gateway import open_storage
from grok2api.security.passwords import ADMIN_PASSWORD_VALUE, hash_password

__all__ = ["add_commands"]

MIN_PASSWORD_LENGTH = 10


def add_commands(commands: Any) -> None:
    admin = commands.add_parser("admin", help="manage the admin login")
    actions = admin.add_subparsers(dest="action", required=True, metavar="ACTION")

    set_password = actions.add_parser(
        "set-password",
        help="store a new admin password (asked for, or read from standard input)",
    )
    set_password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    set_password.set_defaults(run=partial(_run, _set_password))

    source = actions.add_parser(
        "password-source",
        help="say where the admin password in force comes from",
    )
    source.set_defaults(run=partial(_run, _password_source))


def _run(action: Any, args: argparse.Namespace) -> int:
    options = server_options_from_env(os.environ)
    return int(trio.run(action, options, args) or 0)


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New admin password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise Grok2APIError("the two passwords differ; nothing was changed")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Grok2APIError(
            f"the admin password needs at least {MIN_PASSWORD_LENGTH} characters; "
            "nothing was changed"
        )
    return password


def _configured_source() -> str | None:
    variable = variable_for(os.environ, "app", "app_password")
    return f"the environment ({variable})" if variable else None


async def _set_password(options: ServerOptions, args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin)
    settings = load_settings(options.data_dir, os.environ)
    hashed = await trio.to_thread.run_sync(hash_password, password)
    async with open_storage(options, settings) as (storage, _):
        await storage.put_value(ADMIN_PASSWORD_VALUE, hashed)
    print("The admin password is stored; open admin sessions have ended.")
    if settings.app.app_password:
        where = _configured_source() or f"{options.data_dir}/config.toml"
        print(
            f"Note: app.app_password is set in {where}, and that password stays "
            "in force until it is removed there.",
            file=sys.stderr,
        )
    return 0


async def _password_source(options: ServerOptions, args: argparse.Namespace) -> int:
    settings = load_settings(options.data_dir, os.environ)
    if settings.app.app_password:
        print("environment" if _configured_source() else "file")
        return 0
    async with open_storage(options, settings) as (storage, _):
        stored = await storage.get_value(ADMIN_PASSWORD_VALUE)
    print("stored" if stored else "none (one is generated on the next start)")
    return 0
