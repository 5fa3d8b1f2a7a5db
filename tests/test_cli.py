"""The operator CLI, run as a subprocess the way a deployment script would."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from grok2api.storage import token_id_for
from tests.conftest import (
    API_KEY,
    Emulator,
    GatewayFactory,
    free_port,
    gateway_env,
    run_cli,
    start_gateway,
)


@pytest.fixture
def env(tmp_path: Path, emulator: Emulator) -> dict[str, str]:
    return gateway_env(tmp_path / "data", emulator)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tokens_add_list_export_remove_without_a_server(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert "added 2 new token(s) to the super pool" in ok(
        run_cli(env, "tokens", "add", "--pool", "super", "s-1", "sso=s-2")
    )
    (tmp_path / "tokens.json").write_text(
        json.dumps({"ssoBasic": [{"token": "b-1", "note": "hi"}]})
    )
    assert "imported 1 token(s), 1 new" in ok(
        run_cli(env, "tokens", "import", str(tmp_path / "tokens.json"))
    )
    listing = ok(run_cli(env, "tokens", "list"))
    assert token_id_for("s-2") in listing and "3 token(s)" in listing
    for secret in ("s-1", "s-2", "b-1"):
        assert secret not in listing.replace(token_id_for(secret), "")
    rows = json.loads(ok(run_cli(env, "tokens", "list", "--json", "--pool", "super")))
    assert {r["id"] for r in rows} == {token_id_for("s-1"), token_id_for("s-2")}
    exported = json.loads(ok(run_cli(env, "tokens", "export")))
    assert {t["token"] for t in exported["super"]} == {"s-1", "s-2"}
    assert exported["basic"] == [{"token": "b-1", "tags": [], "note": "hi"}]
    assert "removed 1 token(s)" in ok(
        run_cli(env, "tokens", "remove", token_id_for("b-1"))
    )
    # Adding a stored token to another pool moves it, and says so.
    assert "(1 already present, 1 of them moved from another pool)" in ok(
        run_cli(env, "tokens", "add", "--pool", "basic", "s-1")
    )
    assert "imported 1 token(s), 0 new, 1 moved to another pool" in ok(
        run_cli(env, "tokens", "import", "--pool", "super", "-", input="s-1\n")
    )
    missing = run_cli(env, "tokens", "remove", "no-such-id")
    assert missing.returncode == 1
    assert "no token has the id 'no-such-id'" in missing.stderr


def test_tokens_import_reads_standard_input(env: dict[str, str]) -> None:
    assert "imported 2 token(s), 2 new" in ok(
        run_cli(env, "tokens", "import", "-", input="x-1\nx-2\n")
    )


def test_tokens_refresh_reads_the_upstream(
    env: dict[str, str], emulator: Emulator
) -> None:
    emulator.control.add_account("r-1", quota=30, remaining=12)
    ok(run_cli(env, "tokens", "add", "r-1", "r-unknown"))
    result = run_cli(env, "tokens", "refresh")
    assert result.returncode == 1  # one token failed
    assert f"{token_id_for('r-1')}  remaining 12" in result.stdout
    assert "refreshed 1 of 2 token(s)" in result.stdout
    rows = {
        r["id"]: r for r in json.loads(ok(run_cli(env, "tokens", "list", "--json")))
    }
    assert rows[token_id_for("r-1")]["quota"] == 12
    assert rows[token_id_for("r-unknown")]["stale"] is True


def test_config_show_redacts_secrets(env: dict[str, str]) -> None:
    shown = json.loads(ok(run_cli(env, "config", "show")))
    assert (
        shown["app"]["api_key"] != API_KEY and API_KEY[-4:] in shown["app"]["api_key"]
    )
    assert shown["app"]["app_password"] == "***"
    assert shown["network"]["base_url"] == env["GROK2API_NETWORK_BASE_URL"]


def test_config_check_lists_every_bad_key_without_a_traceback(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert "configuration OK" in ok(run_cli(env, "config", "check"))
    config = Path(env["DATA_DIR"]) / "config.toml"
    config.write_text('[retry]\nmax_retry = "lots"\n[chat]\nthinkin = true\n')
    bad = {**env, "GROK2API_SECURITY_RATE_LIMIT_PER_MINUTE": "fast"}
    result = run_cli(bad, "config", "check")
    assert result.returncode == 2
    for path in ("retry.max_retry", "chat.thinkin", "security.rate_limit_per_minute"):
        assert path in result.stderr
    assert "Traceback" not in result.stderr
    serve = run_cli(bad, "serve")
    assert (
        serve.returncode == 2
        and "retry.max_retry" in serve.stderr
        and "Traceback" not in serve.stderr
    )
    # A bad server variable does not hide the settings' problems.
    for command in (("config", "check"), ("serve",)):
        both = run_cli({**bad, "SERVER_WORKERS": "0"}, *command)
        assert both.returncode == 2
        assert "SERVER_WORKERS" in both.stderr and "retry.max_retry" in both.stderr


def test_config_check_refuses_what_serve_refuses(env: dict[str, str]) -> None:
    for bad, named in (
        ({"GROK2API_TOKEN_SELECTION_STRATEGY": "telepathy"}, "telepathy"),
        ({"SERVER_HOST": "a..b"}, "a..b"),
    ):
        for command in (("config", "check"), ("serve",)):
            result = run_cli({**env, **bad}, *command)
            assert result.returncode == 2 and named in result.stderr, command
            assert "Traceback" not in result.stderr


def test_bad_server_variables_stop_start_up_clearly(env: dict[str, str]) -> None:
    result = run_cli(
        {**env, "SERVER_PORT": "http", "SERVER_STORAGE_TYPE": "floppy"}, "serve"
    )
    assert result.returncode == 2
    assert "SERVER_PORT" in result.stderr and "Traceback" not in result.stderr
    result = run_cli({**env, "SERVER_STORAGE_TYPE": "floppy"}, "serve")
    assert (
        result.returncode == 2
        and "floppy" in result.stderr
        and "Traceback" not in result.stderr
    )
    result = run_cli({**env, "GROK2API_MODELS_ALIASES": '{"gpt": "nope"}'}, "serve")
    assert result.returncode == 2 and "models.aliases" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_address_that_cannot_be_served_stops_start_up_clearly(
    env: dict[str, str], workers: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for host, reason in (("127.0.0.1", "in use"), ("no-such-host.invalid", "")):
            result = run_cli(
                {
                    **env,
                    "SERVER_HOST": host,
                    "SERVER_PORT": port,
                    "SERVER_WORKERS": workers,
                },
                "serve",
            )
            assert result.returncode == 2, result.stderr
            assert f"cannot listen on {host}:{port}" in result.stderr
            assert reason in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_log_level_is_listed_with_the_other_problems(
    env: dict[str, str],
) -> None:
    bad = {**env, "LOG_LEVEL": "verbose", "SERVER_PORT": "http"}
    for command in (("config", "check"), ("serve",), ("tokens", "list")):
        result = run_cli(bad, *command)
        assert result.returncode == 2
        assert "LOG_LEVEL: must be one of" in result.stderr
        assert "SERVER_PORT" in result.stderr and "Traceback" not in result.stderr


def test_a_storage_that_cannot_open_stops_start_up_before_any_worker(
    env: dict[str, str], tmp_path: Path
) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    result = run_cli({**env, "DATA_DIR": str(a_file)}, "serve")
    assert result.returncode == 2 and "DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    data_dir = Path(env["DATA_DIR"])
    (data_dir / "grok2api.sqlite3").mkdir(parents=True)
    result = run_cli({**env, "SERVER_WORKERS": "2"}, "serve")
    assert result.returncode == 2 and "Is a directory" in result.stderr
    assert "Traceback" not in result.stderr and "worker" not in result.stderr


def test_tokens_sealed_with_a_key_are_refused_without_that_key(
    env: dict[str, str],
) -> None:
    sealing = {**env, "GROK2API_SECURITY_SECRET_KEY": "the key that sealed"}
    ok(run_cli(sealing, "tokens", "add", "sso-sealed-secret"))
    for other in (env, {**env, "GROK2API_SECURITY_SECRET_KEY": "another key"}):
        for command in (("serve",), ("tokens", "export")):
            result = run_cli(other, *command)
            # Sent upstream as the cookie, the ciphertext would get the
            # token marked invalid; exported, it would pass for the secret.
            assert result.returncode == 2, (command, result.stderr)
            assert "security.secret_key" in result.stderr
            assert "Traceback" not in result.stderr
            assert "sealed:" not in result.stdout
    assert "sso-sealed-secret" in ok(run_cli(sealing, "tokens", "export"))


def test_first_start_writes_the_config_file_once(env: dict[str, str]) -> None:
    config = Path(env["DATA_DIR"]) / "config.toml"
    ok(run_cli(env, "config", "check"))
    assert not config.exists()  # only the server writes it
    gateway = start_gateway(env, Path(env["DATA_DIR"]).parent / "serve.log")
    try:
        assert config.exists() and "[token]" in config.read_text()
        assert config.stat().st_mode & 0o777 == 0o600
        database = Path(env["DATA_DIR"]) / "grok2api.sqlite3"
        assert database.stat().st_mode & 0o777 == 0o600  # it holds the tokens
    finally:
        assert gateway.stop() == 0


def test_sigterm_lets_an_in_flight_stream_finish(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    emulator.control.configure(line_delay=0.2, answer_tokens=8, thinking_tokens=0)
    gateway = gateway_factory(["tok-a"], GROK2API_TIMEOUT_SHUTDOWN_GRACE="10")
    with (
        gateway.client() as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "grok-4",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        ) as response,
    ):
        chunks = response.iter_bytes()
        first = next(chunks)
        gateway.process.send_signal(signal.SIGTERM)
        rest = b"".join(chunks)
    assert (first + rest).rstrip().endswith(b"data: [DONE]")
    assert gateway.process.wait(15) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{gateway.url}/health", timeout=1)
    (token,) = run_tokens(gateway.env)
    assert token["use_count"] == 1 and token["reserved"] == 0


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
@pytest.mark.parametrize("grace_set", ["at-start", "at-runtime", "zero"])
def test_what_outlives_the_grace_period_ends_with_an_error_not_a_cut(
    gateway_factory: GatewayFactory, emulator: Emulator, stream: bool, grace_set: str
) -> None:
    emulator.control.add_account("tok-a")
    emulator.control.configure(line_delay=1.0, answer_tokens=30, thinking_tokens=0)
    if grace_set != "at-runtime":
        grace = "0" if grace_set == "zero" else "1"
        gateway = gateway_factory(["tok-a"], GROK2API_TIMEOUT_SHUTDOWN_GRACE=grace)
    else:
        gateway = gateway_factory(["tok-a"])
        with gateway.admin() as admin:
            changed = admin.patch(
                "/v1/admin/config", json={"timeout": {"shutdown_grace": 1}}
            )
        assert changed.status_code == 200, changed.text
    body = {
        "model": "grok-4",
        "stream": stream,
        "messages": [{"role": "user", "content": "x"}],
    }
    with gateway.client() as client:
        if stream:
            with client.stream("POST", "/v1/chat/completions", json=body) as answer:
                chunks = answer.iter_bytes()
                first = next(chunks)
                signalled = time.monotonic()
                gateway.process.send_signal(signal.SIGTERM)
                text = (first + b"".join(chunks)).decode()
            assert answer.status_code == 200
            assert '"code": "server_shutting_down"' in text
            assert text.rstrip().endswith("data: [DONE]")
        else:
            timer = threading.Timer(1.0, gateway.process.send_signal, [signal.SIGTERM])
            timer.start()
            signalled = time.monotonic() + 1.0
            answer = client.post("/v1/chat/completions", json=body, timeout=30)
            timer.join()
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "server_shutting_down"
    assert gateway.process.wait(15) == 0
    # The default grace is 10 s; the one set here is 1 s.
    assert time.monotonic() - signalled < 6
    records = emulator.control.requests(
        path="/rest/app-chat/conversations/new", settled=True
    )
    assert records[-1]["outcome"] == "cancelled"
    [line] = [
        line
        for line in gateway.log().splitlines()
        if "grok2api.access: POST /v1/chat/completions" in line
    ]
    assert " token=-" not in line
    if stream:
        assert " 200 " in line and line.endswith(" outcome=error_event")
    else:
        assert " 503 " in line
    (token,) = run_tokens(gateway.env)
    # The upstream counted the cut conversation; so does the ledger, once.
    assert token["reserved"] == 0
    assert token["quota_total"] - token["quota"] == records[-1]["charged"] == 1


def test_a_second_sigterm_does_not_cut_the_shutdown_short(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    emulator.control.configure(line_delay=1.0, answer_tokens=30, thinking_tokens=0)
    gateway = gateway_factory(["tok-a"], GROK2API_TIMEOUT_SHUTDOWN_GRACE="2")
    body = {
        "model": "grok-4",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    with (
        gateway.client() as client,
        client.stream("POST", "/v1/chat/completions", json=body) as answer,
    ):
        chunks = answer.iter_bytes()
        first = next(chunks)
        gateway.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        gateway.process.send_signal(signal.SIGTERM)
        text = (first + b"".join(chunks)).decode()
    assert '"code": "server_shutting_down"' in text
    assert text.rstrip().endswith("data: [DONE]")
    assert gateway.process.wait(15) == 0
    (token,) = run_tokens(gateway.env)
    assert token["reserved"] == 0


def run_tokens(env: dict[str, str]) -> list[dict[str, object]]:
    return json.loads(ok(run_cli(env, "tokens", "list", "--json")))  # type: ignore[no-any-return]


def test_demo_prints_working_snippets(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "grok2api.cli", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "GROK2API_APP_APP_PASSWORD": "demo-admin-password"},
    )
    try:
        assert process.stdout is not None
        banner = ""
        deadline = time.monotonic() + 30
        while "print(reply" not in banner and time.monotonic() < deadline:
            banner += process.stdout.readline()
        key = re.search(r"api_key=\"([^\"]+)\"", banner)
        assert key is not None, banner
        assert f"curl http://127.0.0.1:{port}/v1/chat/completions" in banner
        import openai

        with openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=key.group(1), max_retries=0
        ) as client:
            reply = client.chat.completions.create(
                model="grok-4", messages=[{"role": "user", "content": "Hello!"}]
            )
            assert reply.choices[0].message.content.startswith("You said: Hello!")  # type: ignore[union-attr]
            streamed = "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(
                    model="grok-4",
                    messages=[{"role": "user", "content": "Hello!"}],
                    stream=True,
                )
            )
            assert streamed == reply.choices[0].message.content
        # Every upstream host points at the emulator, so the admin features
        # (NSFW reaches the accounts host) never leave the machine.
        settings = httpx.get(
            f"http://127.0.0.1:{port}/v1/admin/config",
            headers={"Authorization": "Bearer demo-admin-password"},
        ).json()["settings"]["network"]
        emulator = settings["base_url"]
        assert emulator.startswith("http://127.0.0.1:")
        assert settings["assets_url"] == settings["accounts_url"] == emulator
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        if process.stdout:
            process.stdout.close()
    data_dir = re.search(r"throwaway data in (\S+);", banner)
    assert data_dir is not None and not Path(data_dir.group(1)).exists()


def test_emulator_command_serves_the_given_tokens() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grok2api.cli",
            "emulator",
            "--port",
            str(port),
            "--token",
            "only-me",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert f"listening on http://127.0.0.1:{port}" in process.stdout.readline()
        from grok2api.emulator import EmulatorControl

        with EmulatorControl(f"http://127.0.0.1:{port}") as control:
            assert [a["pool"] for a in control.accounts()] == ["basic"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        if process.stdout:
            process.stdout.close()


def test_a_password_under_its_old_variable_name_is_from_the_environment(
    env: dict[str, str],
) -> None:
    old_name = {
        **{k: v for k, v in env.items() if k != "GROK2API_APP_APP_PASSWORD"},
        "GROK2API_APP_KEY": "an-admin-password-long-enough",
    }
    assert ok(run_cli(old_name, "admin", "password-source")).strip() == "environment"
