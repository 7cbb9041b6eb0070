"""The OpenAPI spec, exercised with schemathesis against a running API process: no request gives a 5xx.

Every operation gets generated requests, valid and invalid (hypothesis). Endless
responses (the SSE feeds and the MJPEG live view) are left out: the SSE feeds
have their own tests (test_api.py).
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings


def test_no_request_makes_the_api_fail(api):
    schema = (
        schemathesis.openapi.from_url(f"{api.base}/openapi.json")
        .exclude(path_regex=r".*/stream$")
        .exclude(path_regex=r".*/live\.mjpg$")
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    tried, failures = {}, []
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            response = case.call(base_url=api.base, timeout=30)
            tried[label] = tried.get(label, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path} {case.path_parameters} -> {response.status_code}: {response.text[:200]}")

        call()
    assert not failures, failures[:10]
    assert len(tried) == len(operations)  # every operation was exercised
