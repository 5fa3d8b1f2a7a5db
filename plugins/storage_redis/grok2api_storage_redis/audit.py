"""The audit log: a sorted set of finished requests, trimmed on every append.

Entries are scored by ``at``. Each member is a sequence number (zero-padded,
so that members of equal ``at`` sort by it) followed by the entry as JSON; the
number keeps two identical entries apart and, among entries of the same
``at``, puts the one appended last first. Appending and trimming to the newest
``keep`` entries are one script, so the log never outgrows ``keep`` however
many workers append at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs
import redis

from grok2api import AuditEntry

from .keys import Keys

__all__ = ["APPEND_AUDIT", "append_args", "list_audit"]

_ENTRY_FIELDS = frozenset(field.name for field in attrs.fields(AuditEntry))

#: ARGV: prefix, keep, then per entry: at, the entry as JSON.
APPEND_AUDIT = """
local log = P .. 'audit'
for i = 3, #ARGV, 2 do
  local seq = redis.call('INCR', P .. 'audit-seq')
  redis.call('ZADD', log, ARGV[i], string.format('%016d:', seq) .. ARGV[i + 1])
end
redis.call('ZREMRANGEBYRANK', log, 0, -tonumber(ARGV[2]) - 1)
return 0
"""


def append_args(entries: Sequence[AuditEntry], keep: int) -> list[str]:
    """The arguments of :data:`APPEND_AUDIT`, after the prefix."""
    args = [str(keep)]
    for entry in entries:
        text = json.dumps(attrs.asdict(entry), separators=(",", ":"))
        args += [repr(float(entry.at)), text]
    return args


def _entry(member: str) -> AuditEntry:
    _, _, text = member.partition(":")
    data = json.loads(text)
    # Fields a newer grok2api added are left out rather than refused.
    return AuditEntry(**{k: v for k, v in data.items() if k in _ENTRY_FIELDS})


def list_audit(r: redis.Redis, keys: Keys, limit: int, offset: int) -> list[AuditEntry]:
    """Up to ``limit`` entries, newest first, skipping ``offset``."""
    if limit <= 0:
        return []
    offset = max(0, offset)
    members: list[str] = r.zrevrange(keys.audit, offset, offset + limit - 1)
    return [_entry(member) for member in members]
