"""Gateways started for fuzzing: each with its own emulator, tokens in both
pools with more quota than a fuzz run can spend, and no per-address rate
limit (the fuzzer is one address sending hundreds of requests)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from grok2api.emulator import run_emulator_in_thread
from tests.conftest import Emulator, Gateway, gateway_env, start_gateway

#: Tokens the emulator knows, by pool; ``grok-4-heavy`` is served by super only.
TOKENS = {"basic": ["fuzz-basic-1", "fuzz-basic-2"], "super": ["fuzz-super-1"]}
QUOTA = 1_000_000


@contextmanager
def running_gateway(folder: Path) -> Iterator[Gateway]:
    with run_emulator_in_thread() as (url, control):
        for pool, tokens in TOKENS.items():
            for token in tokens:
                control.add_account(token, pool=pool, quota=QUOTA, remaining=QUOTA)
        env = gateway_env(
            folder / "data",
            Emulator(url, control),
            GROK2API_SECURITY_RATE_LIMIT_ENABLED="false",
            GROK2API_TOKEN_BASIC_QUOTA=str(QUOTA),
            GROK2API_TOKEN_SUPER_QUOTA=str(QUOTA),
        )
        gateway = start_gateway(env, folder / "gateway.log")
        try:
            for pool, tokens in TOKENS.items():
                gateway.add_tokens(tokens, pool)
            yield gateway
        finally:
            gateway.stop(signal.SIGKILL)


@pytest.fixture(scope="package")
def fuzzed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway the public API is fuzzed against; other tests here may
    use it for anything that leaves its tokens alone."""
    with running_gateway(tmp_path_factory.mktemp("fuzz")) as gateway:
        yield gateway


@pytest.fixture(scope="package")
def admin_fuzzed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway of its own for the admin fuzz, which adds tokens and keys
    and changes settings at random."""
    with running_gateway(tmp_path_factory.mktemp("fuzz-admin")) as gateway:
        yield gateway
