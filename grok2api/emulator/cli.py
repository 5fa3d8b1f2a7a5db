"""Entry points for ``grok2api emulator`` and ``python -m grok2api.emulator``."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Sequence
from functools import partial

import trio

from .server import serve_emulator
from .state import EmulatorConfig, EmulatorState

__all__ = ["main", "parse_account_spec", "run_emulator_cli"]


def parse_account_spec(spec: str) -> dict[str, object]:
    """Parse ``token[:pool[:quota[:window_seconds]]]`` into account fields.

    Raises:
        ValueError: the spec is empty or a number is not an integer.
    """
    token, *rest = spec.split(":")
    if not token:
        raise ValueError(f"account spec has no token: {spec!r}")
    fields: dict[str, object] = {"token": token}
    if rest and rest[0]:
        fields["pool"] = rest[0]
    if len(rest) > 1 and rest[1]:
        fields["quota"] = int(rest[1])
    if len(rest) > 2 and rest[2]:
        fields["window_seconds"] = int(rest[2])
    return fields


def run_emulator_cli(
    host: str,
    port: int,
    accounts: Sequence[str],
    *,
    answer_tokens: int = 8,
    thinking_tokens: int = 4,
    line_delay: float = 0.0,
) -> None:
    """Serve the emulator in the foreground until Ctrl-C.

    Prints one line ``Grok emulator listening on http://HOST:PORT`` once the
    socket listens, so scripts that pass port 0 can read the real port.

    Args:
        host: address to bind.
        port: port to bind; 0 picks a free one.
        accounts: account specs ``token[:pool[:quota[:window_seconds]]]``.
            With none, every token is accepted as a fresh basic account.
        answer_tokens: answer tokens per chat.
        thinking_tokens: reasoning tokens per chat in thinking modes.
        line_delay: seconds between stream lines.
    """
    config = EmulatorConfig(
        answer_tokens=answer_tokens,
        thinking_tokens=thinking_tokens,
        line_delay=line_delay,
        auto_register=not accounts,
    )
    state = EmulatorState(config)
    for spec in accounts:
        fields = parse_account_spec(spec)
        state.add_account(str(fields.pop("token")), **fields)  # type: ignore[arg-type]

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                partial(serve_emulator, host, port, state=state)
            )
            url_host = f"[{host}]" if ":" in host else host
            print(f"Grok emulator listening on http://{url_host}:{bound}", flush=True)
            # Ctrl-C and SIGTERM (how benchmarks stop it) end the run quietly.
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _signum in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(serve)
    except* KeyboardInterrupt:
        # Only reachable when Ctrl-C lands before the signal receiver is up.
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m grok2api.emulator [--host H] [--port N] [--account SPEC ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m grok2api.emulator", description="Run the fake Grok upstream."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="TOKEN[:POOL[:QUOTA[:WINDOW]]]",
        help="register an account (repeatable); none accepts any token",
    )
    parser.add_argument("--answer-tokens", type=int, default=8)
    parser.add_argument("--thinking-tokens", type=int, default=4)
    parser.add_argument("--line-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    run_emulator_cli(
        args.host,
        args.port,
        args.account,
        answer_tokens=args.answer_tokens,
        thinking_tokens=args.thinking_tokens,
        line_delay=args.line_delay,
    )
    return 0
