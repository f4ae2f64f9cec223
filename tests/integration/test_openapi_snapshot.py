"""The live HTTP API (its OpenAPI document) is the same before and after a refactor."""

from __future__ import annotations

import httpx
import pytest

from tests.snapshots.behaviour import compare, without_empty_examples

pytestmark = pytest.mark.integration


def test_openapi_document_is_unchanged(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/pipelines/{name}" in spec["paths"]
    compare("openapi.json", without_empty_examples(spec))
