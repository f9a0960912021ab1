"""Schemathesis against the OpenAPI document of a real server (uvicorn, tiny bundles): a bounded number of
generated requests per operation, none answered with a 5xx or a response that breaks the documented schema."""
from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.service.bundles import build_all
from tests.service.processes import free_port, wait_for


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("schemathesis-artifacts")
    build_all(artifacts)
    port = free_port()
    env = {**os.environ, "RECSERVE_ARTIFACTS": str(artifacts), "RECSERVE_REDIS_URL": "", "RECSERVE_LOG_LEVEL": "error"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200)
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")
    finally:
        proc.terminate()
        proc.wait(10)


def test_no_5xx_and_every_response_as_documented(api_schema):
    # Operation by operation with Hypothesis directly: schemathesis's pytest fixture hook does not run on
    # this pytest version.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/rank", "/recommend", "/items", "/users/{user_id}/events"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case):
            case.call_and_validate()

        check()
