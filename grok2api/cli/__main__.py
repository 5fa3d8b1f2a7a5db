"""``python -m grok2api.cli``: the same as the ``grok2api`` command."""

from grok2api.cli import main

raise SystemExit(main())
