"""The ``grok2api`` command.

Every subcommand reads the same settings as the server (``SERVER_*`` and
``DATA_DIR`` from the environment, ``DATA_DIR/config.toml``, ``GROK2API_*``
overrides) and works on the configured storage whether or not a server is
running. Operator-facing failures print one message and exit with status 2;
no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from grok2api.config.server import LOG_LEVELS
from grok2api.errors import Grok2APIError
from grok2api.logs import configure_logging

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from grok2api.cli import admin_cmd, config_cmd, serve, storage_cmd, tokens

    parser = argparse.ArgumentParser(
        prog="grok2api",
        description="An OpenAI-compatible gateway to the Grok web app.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_commands(commands)
    tokens.add_commands(commands)
    config_cmd.add_commands(commands)
    storage_cmd.add_commands(commands)
    admin_cmd.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status."""
    args = _parser().parse_args(argv)
    level = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
    # A bad level is reported with the other server variables' problems.
    configure_logging(level if level in LOG_LEVELS else "INFO")
    try:
        return int(args.run(args) or 0)
    except Grok2APIError as exc:
        print(f"grok2api: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
