"""``python -m grok2api.emulator``: run the fake Grok upstream."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
