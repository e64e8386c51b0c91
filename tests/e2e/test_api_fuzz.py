"""Schemathesis against the LIVE service: every operation of its own OpenAPI document.

One `ledger serve` (SQLite in a temporary file) runs for the whole module; schemathesis loads
/schema/openapi.json from it and generates schema-valid and schema-invalid requests for every
operation (schemathesis' examples, coverage and fuzzing phases). Whatever the request, the answer
must not be a 5xx, must use a status code the document lists for the operation, must have the
documented content type and must match the documented body schema.

The fuzzing phase is random (Hypothesis prints the seed of a failure: rerun with
--hypothesis-seed=N); the coverage phase is the same on every run. All traffic goes to
127.0.0.1; the examples are bounded (MAX_EXAMPLES per operation) and the module takes seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.server import RunningServer, running_server

MAX_EXAMPLES = 25

OPERATIONS = [
    ("POST", "/v1/windows/{window_id}/admissions"),
    ("GET", "/v1/windows"),
    ("GET", "/v1/windows/{window_id}"),
    ("POST", "/v1/windows/{window_id}/close"),
    ("GET", "/v1/windows/{window_id}/receipt"),
    ("GET", "/v1/windows/{window_id}/gate"),
    ("GET", "/v1/windows/{window_id}/admitted"),
    ("GET", "/v1/windows/{window_id}/history"),
    ("GET", "/v1/windows/{window_id}/verify"),
    ("POST", "/v1/windows/{window_id}/reconcile"),
    ("POST", "/v1/windows/{window_id}/bus-duplicates/accept"),
    ("GET", "/v1/quarantine"),
    ("GET", "/v1/keys"),
    ("GET", "/health"),
    ("GET", "/metrics"),
]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    database = Path(tmp_path_factory.mktemp("fuzz")) / "ledger.db"
    with running_server(f"sqlite:///{database}") as server:
        # Some state to read: an open window with a quarantined event, and a closed (PASS) one.
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            for window_id, events in {
                "open": [("a", {"n": 1}), ("a", {"n": 2}), ("b", {})],
                "closed": [("a", {"n": 1}), ("b", {"n": 2})],
            }.items():
                response = client.post(
                    f"/v1/windows/{window_id}/admissions",
                    json={
                        "events": [
                            {"event_type": "t", "event_id": i, "payload": p} for i, p in events
                        ]
                    },
                )
                assert response.status_code == 200, response.text
            assert client.post("/v1/windows/closed/close").status_code == 200
        yield server


@pytest.fixture(scope="module")
def api_schema(live_server: RunningServer) -> schemathesis.BaseSchema:
    """The document the live server serves (not one built in-process)."""
    loaded = schemathesis.openapi.from_url(live_server.url + "/schema/openapi.json", timeout=30)
    loaded.config.update(base_url=live_server.url)
    return loaded


def test_the_fuzzed_operations_are_every_operation_of_the_live_document(api_schema):
    live = {result.ok().label for result in api_schema.get_all_operations()}
    assert live == {f"{method} {path}" for method, path in OPERATIONS}


# schemathesis.pytest.from_fixture() (lazy loading: the pytest way to fuzz a server that a fixture
# starts) fails under pytest 9.2 (it reads `request.node._nodeid`, which is gone). So each
# operation gets a test item of its own here, built by the same schemathesis test builder that
# `@schema.parametrize()` uses: its examples, coverage (boundary and invalid values of every
# parameter and body field, positive and negative) and fuzzing phases.
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_answers_within_its_documented_contract(
    api_schema, live_server, method, path
):
    operation = api_schema[path][method]

    def answers_within_the_contract(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=live_server.url, checks=CHECKS, timeout=60)

    run = create_test(
        operation=operation,
        test_func=answers_within_the_contract,
        config=HypothesisTestConfig(
            project=api_schema.config,
            modes=list(HypothesisTestMode),
            settings=settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
            ),
        ),
    )
    run()
