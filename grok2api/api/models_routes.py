"""``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from grok2api.api.http import json_response
from grok2api.errors import ApiError
from grok2api.gateway import Gateway, current_gateway
from grok2api.models import ModelKind, ModelSpec

__all__ = ["models_routes", "served_model"]

models_routes = Blueprint("models", __name__, url_prefix="/v1/models")

#: The catalogue has no release dates; one fixed, honest-looking timestamp
#: (2026-01-01) keeps clients that sort by ``created`` deterministic.
_CREATED = 1767225600

#: Kinds this version serves. Image edit and video models are listed once
#: their endpoints exist, so a client never picks a model the gateway cannot
#: serve.
_SERVED_KINDS = {
    ModelKind.CHAT,
    ModelKind.IMAGE,
    ModelKind.IMAGE_EDIT,
    ModelKind.VIDEO,
}


def _model_object(model_id: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": _CREATED,
        "owned_by": "grok2api",
    }


def _served_ids() -> list[str]:
    """The models this gateway serves that the calling key may use."""
    catalog = current_gateway().models
    key = request.scope.get("grok2api.api_key")
    allowed = set(key.limits.models) if key is not None else set()
    return [
        m
        for m in catalog.public_ids()
        if (spec := catalog.get(m))
        and spec.kind in _SERVED_KINDS
        and (not allowed or m in allowed or spec.id in allowed)
    ]


@models_routes.get("")
async def list_models() -> Response:
    return json_response(
        {"object": "list", "data": [_model_object(m) for m in _served_ids()]}
    )


@models_routes.get("/<path:model_id>")
async def get_model(model_id: str) -> Response:
    if model_id not in _served_ids():
        raise ApiError(
            404,
            f"The model {model_id!r} does not exist.",
            code="model_not_found",
            param="model",
        )
    return json_response(_model_object(model_id))


def served_model(
    gateway: Gateway,
    model_id: str,
    kind: ModelKind | tuple[ModelKind, ...],
    refusal: str,
) -> ModelSpec:
    """The catalogue entry of a model a route was asked for: a 404 when it
    does not exist, a 400 saying ``refusal`` when it is of another kind
    (``kind`` names the one kind the route serves, or several)."""
    model = gateway.models.get(model_id)
    if model is None:
        raise ApiError(
            404,
            f"The model {model_id!r} does not exist; GET /v1/models lists the models.",
            code="model_not_found",
            param="model",
        )
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if model.kind not in kinds:
        raise ApiError(
            400,
            f"The model {model_id!r} {refusal}",
            code="model_not_supported",
            param="model",
        )
    return model
