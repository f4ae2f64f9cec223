from __future__ import annotations

import json

import pytest

from serving import errors
from serving.http.errors import error_response


def _all_errors() -> list[type[errors.CanaryError]]:
    out, todo = [], [errors.CanaryError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


@pytest.mark.parametrize("cls", _all_errors(), ids=lambda c: c.__name__)
def test_every_error_maps_to_its_status_and_code(cls: type[errors.CanaryError]) -> None:
    secret = "/srv/secret/path.onnx exploded"
    resp = error_response(cls(secret), "rid-1")
    body = json.loads(bytes(resp.body))
    assert resp.status_code == cls.status_code
    assert body["error"]["code"] == cls.code
    assert body["request_id"] == "rid-1" and resp.headers["X-Request-Id"] == "rid-1"
    if cls.status_code >= 500:
        assert secret not in json.dumps(body)  # 5xx never echoes internals
    else:
        assert body["error"]["message"] == secret


def test_codes_are_unique_per_class() -> None:
    codes = [c.code for c in _all_errors()]
    assert len(codes) == len(set(codes))


def test_statuses() -> None:
    assert errors.UndecodableImage.status_code == 400
    assert errors.UnsupportedMediaType.status_code == 415
    assert errors.ImageTooLarge.status_code == 413
    assert errors.TooManyFrames.status_code == 413
    assert errors.UnknownPipeline.status_code == 404


def test_unexpected_exception_is_a_generic_500() -> None:
    resp = error_response(KeyError("internal detail"), "rid")
    body = json.loads(bytes(resp.body))
    assert resp.status_code == 500 and body["error"]["code"] == "internal_error"
    assert "internal detail" not in json.dumps(body)


def test_timeout_is_504_and_unavailable_has_retry_after() -> None:
    assert error_response(TimeoutError(), "r").status_code == 504
    resp = error_response(errors.ServiceUnavailable("x"), "r")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
