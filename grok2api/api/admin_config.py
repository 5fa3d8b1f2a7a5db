"""The admin REST API for runtime configuration (``/v1/admin/config``).

A change is validated, merged into the overrides kept in storage, and applied
by this worker at once; every other worker and host applies it within about a
second through the storage's change version. Keys set in the environment win
over runtime changes, so the answer lists which of the changed keys are pinned
that way and have no effect until the variable is removed.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from grok2api.api.http import json_response, read_json_body
from grok2api.config import (
    SECRET_KEYS,
    load_settings,
    mask_secret,
    settings_as_dict,
    validate_overrides,
)
from grok2api.errors import ApiError, ConfigError, PluginError
from grok2api.gateway import Gateway, current_gateway

__all__ = ["admin_config"]

admin_config = Blueprint("admin_config", __name__, url_prefix="/v1/admin/config")

#: Keys whose runtime override would be wrong or unsafe, and what to do instead.
_NOT_AT_RUNTIME = {
    "app.app_password": "use `grok2api admin set-password`, which stores only a hash.",
    "security.secret_key": "it seals the stored tokens; set it in the environment "
    "or config.toml and restart.",
}


def _pinned(gateway: Gateway, changes: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"{section}.{key}"
        for section, values in changes.items()
        for key in values
        if f"GROK2API_{section}_{key}".upper() in gateway.environ
    ]


def _redacted_overrides(
    overrides: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    return {
        section: {
            key: mask_secret(str(value)) if f"{section}.{key}" in SECRET_KEYS else value
            for key, value in values.items()
        }
        for section, values in overrides.items()
    }


async def _view(gateway: Gateway) -> dict[str, Any]:
    overrides = await gateway.storage.load_config_overrides()
    return {
        "settings": settings_as_dict(gateway.settings, redact=True),
        "overrides": _redacted_overrides(overrides),
        "pinned_by_environment": _pinned(gateway, overrides),
    }


@admin_config.get("")
async def show_config() -> Response:
    return json_response(await _view(current_gateway()))


@admin_config.patch("")
async def change_config() -> Response:
    """Merge ``{section: {key: value}}`` into the runtime overrides; a
    ``null`` value removes that key's override."""
    gateway = current_gateway()
    body = await read_json_body()
    if not isinstance(body, dict) or not all(
        isinstance(v, dict) for v in body.values()
    ):
        raise ApiError(
            400, "Send {section: {key: value}} as a JSON object.", param="body"
        )
    changes = {
        section: {key: value for key, value in values.items() if value is not None}
        for section, values in body.items()
    }
    for section, values in body.items():
        for key in values:
            if f"{section}.{key}" in _NOT_AT_RUNTIME:
                raise ApiError(
                    400,
                    f"{section}.{key} cannot be changed at runtime: "
                    f"{_NOT_AT_RUNTIME[f'{section}.{key}']}",
                    param=f"{section}.{key}",
                )
    problems = validate_overrides(changes)
    if problems:
        raise ApiError(
            400, "Invalid configuration: " + "; ".join(problems), param="body"
        )

    overrides = await gateway.storage.load_config_overrides()
    for section, values in body.items():
        merged = {**overrides.get(section, {}), **values}
        overrides[section] = {k: v for k, v in merged.items() if v is not None}
        if not overrides[section]:
            del overrides[section]
    try:
        gateway.check_settings(
            load_settings(gateway.options.data_dir, gateway.environ, overrides)
        )
    except ConfigError as exc:
        raise ApiError(
            400, "Invalid configuration: " + "; ".join(exc.problems), param="body"
        ) from exc
    except PluginError as exc:
        raise ApiError(400, str(exc), param="body") from exc
    await gateway.storage.save_config_overrides(overrides)
    await gateway.reload_settings()
    view = await _view(gateway)
    view["pinned_by_environment"] = _pinned(gateway, body)
    return json_response(view)
