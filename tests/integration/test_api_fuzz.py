"""The OpenAPI spec, exercised with schemathesis against a running API process: no request gives a 5xx.

Endless responses (the SSE feeds and the MJPEG live view) are left out: the
SSE feeds have their own tests (test_api.py).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error


@pytest.fixture(scope="module")
def api_schema(api):
    schema = schemathesis.openapi.from_url(f"{api.base}/openapi.json")
    return schema.exclude(path_regex=r".*/stream$").exclude(path_regex=r".*/live\.mjpg$")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_api_fail(case):
    case.call_and_validate(checks=[not_a_server_error], timeout=30)
