"""Every bad input gets a 4xx with a stable error code, and no 5xx echoes internals."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.integration.media import astronaut, encode

pytestmark = pytest.mark.integration


def _code(r: httpx.Response) -> tuple[int, str]:
    body = r.json()
    assert body["request_id"] == r.headers["X-Request-Id"]
    return r.status_code, body["error"]["code"]


def test_undecodable_image(client: httpx.Client) -> None:
    r = client.post(
        "/v1/pipelines/inspect", files={"image": ("x.png", b"not an image", "image/png")}
    )
    assert _code(r) == (400, "undecodable_image")


def test_empty_body(client: httpx.Client) -> None:
    r = client.post("/v1/pipelines/inspect", content=b"", headers={"Content-Type": "image/png"})
    assert _code(r) == (400, "empty_body")
    r = client.post("/v1/pipelines/inspect", content=b"")
    assert _code(r) == (400, "empty_body")


def test_wrong_content_type(client: httpx.Client) -> None:
    r = client.post(
        "/v1/pipelines/inspect", content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert _code(r) == (415, "unsupported_media_type")


def test_bad_json_and_base64(client: httpx.Client) -> None:
    r = client.post(
        "/v1/pipelines/inspect", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert _code(r) == (400, "bad_request")
    r = client.post("/v1/pipelines/inspect", json={"image_base64": "%%%"})
    assert _code(r) == (400, "invalid_base64")
    r = client.post("/v1/pipelines/inspect", json={"picture": "abc"})
    assert _code(r) == (422, "invalid_input")


def test_image_over_limits(client: httpx.Client) -> None:
    import numpy as np

    # 7000 x 6000 = 42 Mpx > the 40 Mpx default; a flat PNG stays small in bytes.
    big = encode(np.zeros((6000, 7000, 3), np.uint8))
    r = client.post("/v1/pipelines/inspect", files={"image": ("big.png", big, "image/png")})
    assert _code(r) == (413, "image_too_large")
    assert "42000000 pixels" in r.json()["error"]["message"]


def test_video_over_frame_limit(client: httpx.Client) -> None:
    frame = base64.b64encode(encode(astronaut()[:64, :64])).decode()
    r = client.post("/v1/pipelines/clip", json={"frames_base64": [frame] * 301})
    assert _code(r) == (413, "too_many_frames")


def test_undecodable_video(client: httpx.Client) -> None:
    r = client.post("/v1/pipelines/clip", files={"video": ("v.mp4", b"\x00" * 500, "video/mp4")})
    assert _code(r) == (400, "undecodable_video")


def test_unknown_pipeline_and_model(client: httpx.Client) -> None:
    img = {"image": ("a.png", encode(astronaut()[:64, :64]), "image/png")}
    r = client.post("/v1/pipelines/nope", files=img)
    assert _code(r) == (404, "unknown_pipeline")
    assert "'nope'" in r.json()["error"]["message"]
    r = client.post("/v1/models/nope:predict", files=img)
    assert _code(r) == (404, "unknown_model")
    # Far above any version a session registers (earlier tests add several).
    r = client.post("/v1/models/detector:predict?version=9999", files=img)
    assert _code(r) == (409, "version_not_served")
    r = client.post("/v1/models/detector:predict?version=abc", files=img)
    assert _code(r) == (422, "invalid_request")
    r = client.post("/v1/pipelines/inspect", files=img, headers={"X-Model-Version": "detector"})
    assert _code(r) == (422, "invalid_input")


def test_unknown_route(client: httpx.Client) -> None:
    assert _code(client.get("/v1/nothing")) == (404, "not_found")


def test_a_replica_refuses_pixels_past_the_limit_even_when_the_ingress_was_skipped(
    client: httpx.Client,
) -> None:
    """Each replica runs with OpenCV's own pixel ceiling (``OPENCV_IO_MAX_IMAGE_PIXELS`` in
    its runtime_env): an image whose size was misstated to it is refused at OpenCV's header
    read, not allocated and decoded."""
    import numpy as np
    from ray import serve

    from deployments.base import deployment_name
    from deployments.images import EncodedImage

    served = client.get("/v1/models").json()["served"]["detector"]["versions"]
    version = min(int(v) for v in served)
    handle = serve.get_app_handle(deployment_name("detector", version))
    small = EncodedImage(encode(astronaut()[:64, :64]), 64, 64)
    assert isinstance(handle.predict.remote(small).result(timeout_s=60), list)
    # 7000 x 6000 = 42 Mpx, past the 40 Mpx limit; told to the replica as 64 x 64.
    big = EncodedImage(encode(np.zeros((6000, 7000, 3), np.uint8)), 64, 64)
    with pytest.raises(Exception, match="could not decode the") as refused:
        handle.predict.remote(big).result(timeout_s=60)
    assert "UndecodableImage" in type(refused.value).__name__ or "UndecodableImage" in repr(
        refused.value
    )
