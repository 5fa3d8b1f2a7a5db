"""An admin change made through one gateway instance reaches another instance
on the same storage: a disabled token within a second, a runtime config
change within about one and a half."""

from __future__ import annotations

import time

import httpx
import pytest

from grok2api.emulator import token_id as emulator_token_id
from grok2api.storage import token_id_for
from tests.conftest import API_KEY, Emulator
from tests.scenarios.conftest import BACKENDS, CHAT_PATH, ClusterFactory

TOKENS = ["tok-x", "tok-y"]
DISABLE_WITHIN = 1.0
CONFIG_WITHIN = 1.5


def _upstream_tokens(emulator: Emulator, since: float) -> list[tuple[float, str]]:
    """(start time, emulator token id) of every upstream chat since ``since``."""
    return [
        (record["started_at"], record["token_id"])
        for record in emulator.control.requests(path=CHAT_PATH)
        if record["started_at"] >= since
    ]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_scenario_admin_changes_on_one_instance_reach_the_other(
    backend: str, start_cluster: ClusterFactory, emulator: Emulator
) -> None:
    for token in TOKENS:
        emulator.control.add_account(token, quota=1_000_000)
    emulator.control.configure(line_delay=0, answer_tokens=4, thinking_tokens=0)
    # Least recently used alternates between the two tokens, so an instance
    # that still believed in the disabled one would choose it every other time.
    cluster = start_cluster(
        backend,
        GROK2API_TOKEN_SELECTION_STRATEGY="lru",
        GROK2API_TOKEN_BASIC_QUOTA="100000",
    )
    a, b = cluster.gateways
    a.add_tokens(TOKENS)
    disabled = emulator_token_id("tok-x")

    with b.client() as client_b, a.admin() as admin_a:

        def chat_on_b(model: str = "grok-4") -> int:
            response = client_b.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            )
            return response.status_code

        warm_up = time.time()
        assert [chat_on_b() for _ in range(4)] == [200] * 4
        seen = {tid for _, tid in _upstream_tokens(emulator, warm_up)}
        assert disabled in seen, "instance B chose the token before it was disabled"

        response = admin_a.patch(
            f"/v1/admin/tokens/{token_id_for('tok-x')}", json={"status": "disabled"}
        )
        assert response.status_code == 200, response.text
        disabled_at = time.time()
        statuses = []
        while time.time() < disabled_at + DISABLE_WITHIN + 0.5:
            statuses.append(chat_on_b())
        assert set(statuses) == {200}
        upstream = _upstream_tokens(emulator, disabled_at)
        late = [tid for at, tid in upstream if at >= disabled_at + DISABLE_WITHIN]
        assert len(late) >= 3, "instance B served requests after the window"
        assert disabled not in late, [
            round(at - disabled_at, 3) for at, tid in upstream if tid == disabled
        ]
        assert b.tokens()[token_id_for("tok-x")]["status"] == "disabled"

        def alias_status() -> int:
            return httpx.get(
                f"{b.api}/models/scenario-alias",
                headers={"Authorization": f"Bearer {API_KEY}"},
            ).status_code

        assert alias_status() == 404
        response = admin_a.patch(
            "/v1/admin/config",
            json={"models": {"aliases": {"scenario-alias": "grok-4"}}},
        )
        assert response.status_code == 200, response.text
        changed_at = time.monotonic()
        while alias_status() != 200:
            assert time.monotonic() < changed_at + CONFIG_WITHIN, (
                f"instance B did not see the alias within {CONFIG_WITHIN}s"
            )
            # Polling another process's view; there is no event to wait on.
            time.sleep(0.05)
        assert chat_on_b("scenario-alias") == 200
