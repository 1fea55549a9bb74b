"""Property-based requests generated from the FastAPI shop's OpenAPI schema: never a 500.

Every operation gets generated bodies, parameters and headers (valid and invalid) through a
real uvicorn server, signed in as a customer (the admin routes as staff). The shop must answer
each with a status below 500 and, when it refuses, with problem+json carrying the request id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.shopflows import ADMIN_TOKEN, Shop, new_ip, running_shop, signup

SPEC = "examples.fastapi_shop.app:app"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with running_shop(SPEC, tmp_path_factory.mktemp("schema"), None) as s:
        yield s


def operations(shop: Shop) -> list[Any]:
    schema = schemathesis.openapi.from_url(shop.url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_the_schema_covers_the_shop(shop: Shop) -> None:
    paths = {(op.method.upper(), op.path) for op in operations(shop)}
    assert ("POST", "/checkout") in paths
    assert ("PATCH", "/admin/products/{id}") in paths
    assert len(paths) >= 13


def test_no_generated_request_gets_a_500(shop: Shop) -> None:
    token = signup(shop)[1]
    seen: list[tuple[str, str, int]] = []
    for operation in operations(shop):

        @given(case=operation.as_strategy())
        @settings(max_examples=25, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            credential = ADMIN_TOKEN if case.path.startswith("/admin") else token
            headers = {"Authorization": f"Bearer {credential}", "X-Forwarded-For": new_ip()}
            response = case.call(base_url=shop.url, headers=headers, timeout=30)
            seen.append((case.method, case.path, response.status_code))
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            if response.status_code >= 400:
                headers = {k.lower(): v[0] for k, v in response.headers.items()}
                assert headers["content-type"].startswith("application/problem+json")
                assert response.json()["request_id"] == headers["x-request-id"]

        check()
    assert len({(m, p) for m, p, _ in seen}) >= 13
    assert any(status < 300 for _, _, status in seen)
