"""Plugins: the hooks, their documentation, the public API, and a third-party
selection strategy installed from its own package."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import pluggy
import pytest

import grok2api
from grok2api import hookspecs
from grok2api.errors import PluginError
from grok2api.plugins import PluginHost, load_plugins
from grok2api.storage import token_id_for
from tests.conftest import REPO, Emulator, GatewayFactory

HOOKS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if inspect.isfunction(value) and hasattr(value, "grok2api_spec")
)


def test_every_hook_is_documented_with_an_example() -> None:
    assert HOOKS, "no hook specs found"
    docs = (REPO / "docs" / "plugins.md").read_text()
    sections = re.split(r"^## ", docs, flags=re.MULTILINE)
    documented = {s.split("(", 1)[0].strip("` \n") for s in sections[1:]}
    assert set(HOOKS) <= documented
    for section in sections[1:]:
        name = section.split("(", 1)[0].strip("` \n")
        if name in HOOKS:
            assert "```python" in section and f"def {name}(" in section, name


def test_every_hook_has_a_docstring_naming_its_arguments() -> None:
    for name in HOOKS:
        spec = getattr(hookspecs, name)
        assert spec.__doc__ and "host" in spec.__doc__, name
        assert next(iter(inspect.signature(spec).parameters)) == "host", name


def test_public_api_is_exactly_what_all_exports() -> None:
    exported = set(grok2api.__all__)
    assert len(exported) == len(grok2api.__all__)
    for name in exported:
        assert hasattr(grok2api, name), name
    public = {
        name
        for name, value in vars(grok2api).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__ import annotations
    }
    assert public == exported


def test_builtins_register_through_the_hooks(tmp_path: Path) -> None:
    plugins = load_plugins(PluginHost(settings=None, data_dir=tmp_path))
    assert {"max_quota", "random", "weighted", "lru"} <= set(
        plugins.selection_strategies()
    )
    assert "local" in plugins.storage_factories()
    assert [f.name for f in plugins.response_filters()][:1] == ["filter_tags"]
    assert (
        "alphabetical" in plugins.selection_strategies()
    )  # the installed test package


def test_a_misspelt_hook_fails_at_start_up(tmp_path: Path) -> None:
    marker = pluggy.HookimplMarker("grok2api")

    class Broken:
        @marker
        def register_selection_strategys(self, host: object) -> list[object]:
            return []

    with pytest.raises(PluginError, match="register_selection_strategys"):
        load_plugins(PluginHost(settings=None, data_dir=tmp_path), extra=[Broken()])


def test_two_plugins_cannot_claim_one_strategy_name(tmp_path: Path) -> None:
    duplicate = types.SimpleNamespace(
        register_selection_strategies=grok2api.hookimpl(
            lambda host: [
                grok2api.SelectionStrategy(
                    "lru", grok2api.CandidateOrder.RANDOM, lambda c: 0
                )
            ]
        )
    )
    plugins = load_plugins(
        PluginHost(settings=None, data_dir=tmp_path), extra=[duplicate]
    )
    with pytest.raises(PluginError, match="'lru'"):
        plugins.selection_strategies()


def test_a_third_party_strategy_is_chosen_by_config(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    tokens = ["tok-a", "tok-b", "tok-c"]
    for token in tokens:
        emulator.control.add_account(token)
    gateway = gateway_factory(tokens, GROK2API_TOKEN_SELECTION_STRATEGY="alphabetical")
    with gateway.admin() as admin:
        for token, note in zip(tokens, ["charlie", "alpha", "bravo"], strict=True):
            assert (
                admin.patch(
                    f"/v1/admin/tokens/{token_id_for(token)}", json={"note": note}
                ).status_code
                == 200
            )
    with gateway.client() as client:
        for _ in range(5):
            response = client.post(
                "/v1/chat/completions",
                json={
                    "model": "grok-4",
                    "messages": [{"role": "user", "content": "x"}],
                },
            )
            assert response.status_code == 200
    uses = {t["note"]: t["use_count"] for t in gateway.tokens().values()}
    assert uses == {"alpha": 5, "bravo": 0, "charlie": 0}


def test_an_unknown_strategy_stops_start_up_with_a_clear_message(
    gateway_factory: GatewayFactory,
) -> None:
    with pytest.raises(AssertionError) as info:
        gateway_factory(GROK2API_TOKEN_SELECTION_STRATEGY="telepathy")
    assert "token.selection_strategy is 'telepathy'" in str(info.value)
    assert "Traceback" not in str(info.value)
