"""Logging set-up shared by the CLI and every server worker.

Hypercorn starts extra workers as fresh processes (multiprocessing spawn), so
each worker configures logging itself when it builds its app; the format
carries the process id to tell workers apart.
"""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["configure_logging"]

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"

# Everything but printable text: line breaks, NUL, escape sequences.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


class OneLineFormatter(logging.Formatter):
    """Keeps each log record on one line of its own.

    Messages quote what clients send (paths, model names, hosts of URLs);
    a client that put a line break there could otherwise write lines that
    look like the server's. Tracebacks, added after the message, keep
    their lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _CONTROL.sub(_escaped, record.message)
        return super().formatMessage(record)


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``; a no-op when logging is already set up."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    # httpx logs every request at INFO; the upstream client logs its own
    # calls with the details that matter, so keep httpx for warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
