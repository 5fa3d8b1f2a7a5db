"""A faithful fake of the Grok web upstream, for tests, the benchmark and the demo.

It speaks the parts of grok.com the gateway's chat path calls (chat stream,
replies to a conversation, upload, rate limits), checks cookies,
``x-statsig-id`` and quotas the way the real site does, and can be told to
fail in every way the real site fails.
It imports nothing from the rest of grok2api.
"""

from __future__ import annotations

from .app import create_app
from .cli import main, parse_account_spec, run_emulator_cli
from .client import EmulatorControl
from .script import answer_tokens, chat_cost, expected_answer, thinking_tokens
from .server import run_emulator_in_thread, serve_emulator
from .state import (
    FAULT_KINDS,
    HTTP_FAULT_KINDS,
    STREAM_FAULT_KINDS,
    Account,
    Conversation,
    EmulatorConfig,
    EmulatorState,
    Fault,
    RequestRecord,
    Upload,
    token_id,
)

__all__ = [
    # running it
    "create_app",
    "serve_emulator",
    "run_emulator_in_thread",
    "run_emulator_cli",
    "main",
    "parse_account_spec",
    # steering it
    "EmulatorControl",
    "EmulatorConfig",
    "EmulatorState",
    "Account",
    "Conversation",
    "Fault",
    "RequestRecord",
    "Upload",
    "FAULT_KINDS",
    "HTTP_FAULT_KINDS",
    "STREAM_FAULT_KINDS",
    "token_id",
    # predicting its answers
    "answer_tokens",
    "thinking_tokens",
    "expected_answer",
    "chat_cost",
]
