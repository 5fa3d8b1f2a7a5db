"""``grok2api serve``, ``grok2api demo`` and ``grok2api emulator``.

One worker runs in this process under Trio with our own signal handling, so
SIGTERM and SIGINT both shut down gracefully: listeners close, in-flight
requests get ``timeout.shutdown_grace`` seconds, then are cancelled. Several
workers run under our supervisor (``cli/supervisor.py``), which restarts a
worker that dies and stops them all the same way.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import textwrap
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from grok2api.cli import h11_protocol
from grok2api.config import (
    ServerOptions,
    Settings,
    ensure_config_file,
    load_settings,
    server_options_from_env,
)
from grok2api.draining import begin_shutdown
from grok2api.errors import ConfigError
from grok2api.gateway import check_installation, open_storage

__all__ = ["add_commands"]

log = logging.getLogger(__name__)

DEMO_TOKEN = "demo-sso-token"


def add_commands(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the gateway (settings from the environment)"
    )
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo", help="run the gateway wired to the bundled Grok emulator"
    )
    demo.add_argument(
        "--port", type=int, default=8000, help="gateway port (default 8000)"
    )
    demo.set_defaults(run=_demo)

    emulator = commands.add_parser("emulator", help="run the bundled Grok emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=9000)
    emulator.add_argument(
        "--token",
        action="append",
        default=[],
        help="an account token it accepts (repeatable)",
    )
    emulator.set_defaults(run=_emulator)


def hypercorn_config(options: ServerOptions, grace: float) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{options.host}:{options.port}"]
    config.workers = options.workers
    config.worker_class = "trio"
    config.application_path = "grok2api.app:create_app()"
    config.graceful_timeout = grace
    config.accesslog = None  # grok2api.access writes one line per request
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75
    # Bursts of hundreds of new connections are normal for a gateway; the
    # default backlog of 100 would reset the excess.
    config.backlog = 2048
    return config


def prepare(options: ServerOptions, environ: dict[str, str]) -> float:
    """Create the data directory and config file, and validate the settings
    before any worker starts, so a bad key fails once, clearly."""
    try:
        options.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            [f"DATA_DIR: {options.data_dir} cannot be a folder ({exc.strerror})"]
        ) from None
    ensure_config_file(options.data_dir)
    settings = load_settings(options.data_dir, environ)
    check_installation(options, settings)
    # Once here rather than in every worker: a storage that cannot be reached,
    # or a secret_key that cannot open the tokens stored there, is one line.
    settings = trio.run(_open_storage_once, options, settings, environ)
    if not settings.app.api_key and not settings.security.allow_anonymous_api:
        log.warning(
            "app.api_key is empty: the API answers local clients only; "
            "set it to serve others"
        )
    return float(settings.timeout.shutdown_grace)


def read_server_options(environ: dict[str, str]) -> ServerOptions:
    """The ``SERVER_*`` options; when they are bad, the problems of the
    settings are listed with theirs, so one run shows every problem.

    Raises:
        ConfigError: every problem found.
    """
    try:
        return server_options_from_env(environ)
    except ConfigError as bad_options:
        data_dir = Path(environ.get("DATA_DIR", "").strip() or ServerOptions().data_dir)
        try:
            load_settings(data_dir, environ)
        except ConfigError as bad_settings:
            raise ConfigError(bad_options.problems + bad_settings.problems) from None
        except OSError:
            pass
        raise


def _serve(args: argparse.Namespace) -> int:
    options = read_server_options(dict(os.environ))
    grace = prepare(options, dict(os.environ))
    config = hypercorn_config(options, grace)
    if options.workers > 1:
        from grok2api.cli.supervisor import supervise

        def revalidate() -> None:
            # SIGHUP: new workers start with the settings as they are now.
            config.graceful_timeout = prepare(options, dict(os.environ))

        def current_grace() -> float:
            settings = load_settings(options.data_dir, dict(os.environ))
            stored = trio.run(_open_storage_once, options, settings, dict(os.environ))
            return float(stored.timeout.shutdown_grace)

        return supervise(config, before_reload=revalidate, current_grace=current_grace)
    from grok2api.app import create_app

    sockets = listening_sockets(config)
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.listen(config.backlog)
    trio.run(
        partial(
            _serve_one,
            create_app(options),
            config,
            partial(_until_signal, config),
            sockets=sockets,
        )
    )
    return 0


def listening_sockets(config: HypercornConfig) -> Sockets:
    """The sockets the server listens on, taken before any app starts.

    Raises:
        ConfigError: the address is taken, or the host does not resolve.
    """
    try:
        return config.create_sockets()
    except (OSError, UnicodeError) as exc:
        # A host name IDNA cannot encode (a..b) fails as a UnicodeError.
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            [
                f"SERVER_HOST/SERVER_PORT: cannot listen on {', '.join(config.bind)} "
                f"({reason})"
            ]
        ) from None


async def _open_storage_once(
    options: ServerOptions, settings: Settings, environ: dict[str, str]
) -> Settings:
    """The settings with the runtime overrides stored so far applied."""
    async with open_storage(options, settings) as (storage, _):
        overrides = await storage.load_config_overrides()
    return load_settings(options.data_dir, environ, overrides)


async def _until_signal(config: HypercornConfig) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info(
                "received %s; shutting down gracefully (another SIGTERM or "
                "SIGINT changes nothing; SIGKILL stops at once)",
                signal.Signals(signum).name,
            )
            break
    # Leaving the receiver would restore the default handlers, and a second
    # signal would kill the process mid-shutdown, answers and ledger cut.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    await begin_draining(config)


async def begin_draining(config: HypercornConfig) -> None:
    """Start the gateway's grace period; call as the shutdown trigger returns."""
    # Hypercorn reads its grace once the trigger has returned: the gateway's
    # own value counts, a runtime change included.
    grace = await begin_shutdown()
    if grace is not None:
        config.graceful_timeout = grace


async def _serve_one(
    app: Any,
    config: HypercornConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    *,
    sockets: Sockets | None = None,
) -> None:
    h11_protocol.install()
    await worker_serve(
        wrap_app(app, config.wsgi_max_body_size, None),
        config,
        sockets=sockets,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _demo(args: argparse.Namespace) -> int:
    from grok2api.emulator import EmulatorState, serve_emulator

    emulator_port = _free_port()
    api_key = "sk-demo-" + secrets.token_urlsafe(12)
    data_dir = Path(tempfile.mkdtemp(prefix="grok2api-demo-"))
    environ = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "SERVER_HOST": "127.0.0.1",
        "SERVER_PORT": str(args.port),
        "SERVER_WORKERS": "1",
        "SERVER_STORAGE_TYPE": "local",
        "SERVER_STORAGE_URL": "",
        "GROK2API_NETWORK_BASE_URL": f"http://127.0.0.1:{emulator_port}",
        "GROK2API_NETWORK_ASSETS_URL": f"http://127.0.0.1:{emulator_port}",
        "GROK2API_NETWORK_ACCOUNTS_URL": f"http://127.0.0.1:{emulator_port}",
        "GROK2API_APP_API_KEY": api_key,
    }
    os.environ.update(environ)
    options = server_options_from_env(environ)
    grace = prepare(options, environ)
    _add_demo_token(options)

    from grok2api.app import create_app

    async def run() -> None:
        state = EmulatorState()
        state.add_account(DEMO_TOKEN)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(serve_emulator, "127.0.0.1", emulator_port, state=state)
            )
            # The gateway shuts down gracefully on the signal; the emulator
            # only has to outlive it.
            config = hypercorn_config(options, grace)
            await _serve_one(
                create_app(options),
                config,
                partial(_until_signal, config),
                task_status=_Announce(_demo_banner(args.port, api_key, data_dir)),
            )
            nursery.cancel_scope.cancel()

    try:
        trio.run(run)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


class _Announce:
    """A task status that prints the demo's banner once the gateway listens."""

    def __init__(self, banner: str) -> None:
        self._banner = banner

    def started(self, value: object = None) -> None:
        print(self._banner, flush=True)


def _add_demo_token(options: ServerOptions) -> None:
    from grok2api.cli.tokens import add_secrets

    trio.run(partial(add_secrets, options, [DEMO_TOKEN], "basic"))


def _demo_banner(port: int, api_key: str, data_dir: Path) -> str:
    base = f"http://127.0.0.1:{port}/v1"
    return textwrap.dedent(
        f"""
        grok2api demo: the gateway at {base}, wired to the bundled Grok emulator
        (throwaway data in {data_dir}; press Ctrl+C to stop).

        curl:
          curl {base}/chat/completions -H 'Authorization: Bearer {api_key}' \\
            -H 'Content-Type: application/json' \\
            -d '{{"model": "grok-4",
                 "messages": [{{"role": "user", "content": "Hello!"}}]}}'

        Python (pip install openai):
          from openai import OpenAI
          client = OpenAI(base_url="{base}", api_key="{api_key}")
          reply = client.chat.completions.create(
              model="grok-4", messages=[{{"role": "user", "content": "Hello!"}}])
          print(reply.choices[0].message.content)
        """
    )


def _emulator(args: argparse.Namespace) -> int:
    from grok2api.emulator import run_emulator_cli

    run_emulator_cli(args.host, args.port, args.token)
    return 0
