"""Property-based API fuzzing from the committed OpenAPI spec: whatever schemathesis sends, no 5xx comes back."""

from __future__ import annotations

import functools

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from neuroscope.server.app import create_app
from neuroscope.server.openapi import SPEC
from neuroscope.server.settings import Settings

schema = schemathesis.openapi.from_path(str(SPEC))


@functools.cache
def _client() -> TestClient:
    from neuroscope.models.loading import load_model

    app = create_app(
        Settings(model="tiny:llama", max_new_tokens=8, cache_size=4), model=load_model("tiny:llama")
    )
    return TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    kw = case.as_transport_kwargs(base_url="http://127.0.0.1:8000")
    if "data" in kw:
        kw["content"] = kw.pop("data")
    response = _client().request(**kw)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )
