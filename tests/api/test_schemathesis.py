"""Property-based tests generated from the service's own OpenAPI document (schemathesis).

Every operation is called with generated requests against the real app and
real sandboxes: no response may be a 5xx, and every response must match the
documented schema (status code, content type, body).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import positive_data_acceptance

from api.app import create_app
from orchestrator.settings import MaxLimits, Settings
from tests.api.helpers import LOOPBACK_PEER, TestClient, auth, make_token, with_api
from tests.conftest import assert_nothing_left

EXAMPLES_PER_OPERATION = 25
ALL_CHECKS = list(HealthCheck)
# Not checked: "schema-valid request accepted". A schema cannot say what the service must refuse
# with 422 on purpose: limits above the operator's maxima, unknown providers, "command xor script".


def test_every_operation_conforms_to_the_schema(settings: Settings) -> None:
    # Bounded maxima keep generated jobs short: whatever a generated script does, it ends within 5 s.
    bounded = with_api(settings, max_sessions_per_provider=64, max_wait_s=10, queue_limit=1000).model_copy(
        update={"max_limits": MaxLimits(timeout_s=5, cpu_s=5, memory_mb=256, output_bytes=65536, disk_mb=64)}
    )
    headers = auth(make_token(bounded, "fuzz"))
    app = create_app(bounded)
    failures: dict[str, str] = {}
    with TestClient(app, client=LOOPBACK_PEER):  # runs the lifespan: recovery, workers, sweeper
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        for operation in operations:

            @given(case=operation.as_strategy())
            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck)
            )
            def check(case: Any) -> None:
                case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

            try:
                check()
            except Exception as exc:  # noqa: BLE001 - gather every operation's failure, then report all
                failures[operation.label] = f"{type(exc).__name__}: {exc}"[:3000]
    assert failures == {}, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    assert_nothing_left(bounded)
