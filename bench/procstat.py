"""What ``/proc`` says about a process tree: CPU time, memory, threads, sockets.

Linux only. Every reader tolerates a process that exits between listing and
reading, since a tree can lose members at any moment.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

__all__ = [
    "Memory",
    "cpu_seconds",
    "established_to_port",
    "memory",
    "time_wait_on_port",
    "time_wait_pairs",
    "tree_pids",
]

_TICKS = os.sysconf("SC_CLK_TCK")
_ESTABLISHED, _TIME_WAIT = "01", "06"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _stat_fields(pid: int) -> list[str] | None:
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # The command name sits in parentheses and may hold spaces; split after it.
    return text[text.rindex(")") + 2 :].split()


def tree_pids(root: int) -> list[int]:
    """``root`` and every descendant alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User plus system CPU of the tree, all threads, reaped children included."""
    ticks = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime, cutime, cstime are fields 14-17 of stat(5).
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / _TICKS


@attrs.frozen
class Memory:
    """Resident memory now and at its peak (kB), and the thread count."""

    rss_kb: int
    hwm_kb: int
    threads: int


def memory(pid: int) -> Memory:
    """``VmRSS``, ``VmHWM`` and ``Threads`` of one process (zeros if gone)."""
    values = {"VmRSS": 0, "VmHWM": 0, "Threads": 0}
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0])
    return Memory(values["VmRSS"], values["VmHWM"], values["Threads"])


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, PermissionError):
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _tcp_rows() -> list[list[str]]:
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = (_read(table) or "").splitlines()[1:]
        rows.extend(line.split() for line in lines)
    return rows


def _remote_port(row: list[str]) -> int:
    return int(row[2].rsplit(":", 1)[1], 16)


def established_to_port(pid: int, port: int) -> set[int]:
    """Local ports of ``pid``'s established TCP connections to ``port``.

    The set (not only its size) lets a caller see whether connections were
    replaced between two looks, not just how many there are.
    """
    inodes = _socket_inodes(pid)
    return {
        int(row[1].rsplit(":", 1)[1], 16)
        for row in _tcp_rows()
        if row[3] == _ESTABLISHED and row[9] in inodes and _remote_port(row) == port
    }


def time_wait_pairs(port: int) -> set[tuple[int, int]]:
    """(local port, remote port) of TIME_WAIT sockets with ``port`` at one end.

    The side that closed a connection first keeps it in TIME_WAIT (60 s on
    Linux), so a pair whose local port is ``port`` was closed by the server
    on ``port``, and one whose remote port is ``port`` by its client.
    """
    pairs = set()
    for row in _tcp_rows():
        if row[3] == _TIME_WAIT:
            local = int(row[1].rsplit(":", 1)[1], 16)
            remote = _remote_port(row)
            if port in (local, remote):
                pairs.add((local, remote))
    return pairs


def time_wait_on_port(port: int) -> int:
    """Recently closed connections (TIME_WAIT) with ``port`` at either end.

    TIME_WAIT sockets belong to no process any more and stay on whichever
    side closed first, so both ends are counted; this sees every client of
    ``port`` on the host. A pool that reuses its connections leaves it flat.
    """
    return sum(
        1
        for row in _tcp_rows()
        if row[3] == _TIME_WAIT
        and port in (_remote_port(row), int(row[1].rsplit(":", 1)[1], 16))
    )
