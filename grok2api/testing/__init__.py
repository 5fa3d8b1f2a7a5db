"""Test kits that ship with grok2api for plugin authors.

:mod:`grok2api.testing.storage_conformance` holds the suite every storage
backend must pass. It needs ``pytest`` and ``pytest-trio``, so nothing in the
gateway imports this package at run time.
"""

from __future__ import annotations
