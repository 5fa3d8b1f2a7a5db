"""The public API fuzzed against a running gateway: the chat completion, image
generation, the models and the probes, with the API key."""

from __future__ import annotations

import zlib

from schemathesis import Case, GenerationMode

from grok2api.api.openapi import openapi_document
from tests.conftest import API_KEY, Gateway
from tests.fuzz.fuzzing import fuzzed_schema, gateway_checks

schema = fuzzed_schema("chat", "images", "models", "operations", "media", "voice")

SERVED = openapi_document()["components"]["schemas"]["ChatCompletionRequest"][
    "properties"
]["model"]["anyOf"][0]["enum"]


def steer_to_served_model(case: Case) -> None:
    """Name a served model in every invalid chat body and in half the valid
    ones. Left alone, nearly every body names an unknown model, so a valid
    one ends at the 404 before the completion runs, and an invalid one could
    be refused for its model instead of for what is wrong with it."""
    body = case.body
    if case.meta is None or not isinstance(body, dict):
        return
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return
    digest = zlib.crc32(model.encode("utf-8", "surrogatepass"))
    if case.meta.generation.mode is GenerationMode.NEGATIVE or digest % 2:
        body["model"] = SERVED[digest // 2 % len(SERVED)]


@schema.parametrize()
def test_public_api_keeps_its_document(case: Case, fuzzed_gateway: Gateway) -> None:
    if case.path == "/v1/chat/completions":
        steer_to_served_model(case)
    case.call_and_validate(
        base_url=fuzzed_gateway.url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        additional_checks=gateway_checks(fuzzed_gateway),
        timeout=30,
    )
