"""The admin API fuzzed against a running gateway, with the admin password as
the bearer key: tokens, keys, runtime config, statistics, the session."""

from __future__ import annotations

from schemathesis import Case

from tests.conftest import ADMIN_KEY, Gateway
from tests.fuzz.fuzzing import fuzzed_schema, gateway_checks

schema = fuzzed_schema(
    "admin: tokens",
    "admin: keys",
    "admin: config",
    "admin: observability",
    "admin: session",
    "admin: cache",
    "admin: assets",
    "admin: jobs",
)


@schema.parametrize()
def test_admin_api_keeps_its_document(
    case: Case, admin_fuzzed_gateway: Gateway
) -> None:
    case.call_and_validate(
        base_url=admin_fuzzed_gateway.url,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        additional_checks=gateway_checks(admin_fuzzed_gateway),
        timeout=30,
    )
