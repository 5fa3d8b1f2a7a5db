"""Logging set-up shared by the CLI and every server worker.

Hypercorn starts extra workers as fresh processes (multiprocessing spawn), so
each worker configures logging itself when it builds its app; the format
carries the process id to tell workers apart.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``; a no-op when logging is already set up."""
    root = logging.getLogger()
    if root.handlers:
        return
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr)
    # httpx logs every request at INFO; the upstream client logs its own
    # calls with the details that matter, so keep httpx for warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
