"""API fuzzing with Schemathesis against the OpenAPI schema, in-process (WSGI) on the real
database, bounded in time: no 5xx, responses conform to the schema, auth is never ignored.

Every operation gets a fixed number of generated requests (derandomized, so a CI run is
reproducible), made with an owner's API key of a tenant that holds data."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from clmsite.models import Role
from clmsite.services import do_create_api_key

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
CHECKS = [checks.not_a_server_error, checks.response_schema_conformance, checks.content_type_conformance, checks.ignored_auth]
EXAMPLES_PER_OPERATION = 30


@pytest.fixture
def wsgi_app(db):
    from django.core import signals
    from django.db import close_old_connections

    from clmsite.wsgi import application

    # As Django's test client does: requests must not close the test's database connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield application
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_every_operation_holds_up_under_generated_input(wsgi_app, shop_a_data) -> None:
    _, raw = do_create_api_key(shop_a_data, role=Role.OWNER)
    headers = {"Authorization": f"Bearer {raw}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    failures, operations = {}, 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collect them all (Schemathesis raises groups), then fail with the list
            failures[operation.label] = str(exc)[:1500]
    assert operations >= 30
    report = Path(__file__).resolve().parent.parent / "var" / "fuzz-failures.txt"
    report.parent.mkdir(exist_ok=True)
    report.write_text("\n\n".join(f"{label}:\n{text}" for label, text in failures.items()))
    assert failures == {}, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
