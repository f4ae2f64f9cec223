"""A baseline frozen from what the champion sees in use, end to end (HTTP, monitor actor, MLflow).

Real photos (the seeded draws of ``drift.reference.photos``) go through the people pipeline; the
champion's own live rows are frozen as its reference; more photos of the same kind show no drift
against it, darkened ones do. The test ends by freezing, from a folder, the very photos the
evaluation reference is made of, so the champion's reference is the evaluation set again for
the tests after it. ``canaryserve drift status`` is printed after each step (run with ``-s``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from drift.reference import DEFAULT_ROWS, evaluation_images
from serving.cli import app
from tests.integration.conftest import wait_for
from tests.integration.media import encode

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("settled_champion")]


def _rows(client: httpx.Client, version: int) -> int:
    for entry in client.get("/v1/drift").json()["versions"]:
        if entry["model"] == "detector" and entry["version"] == str(version):
            return int(entry["rows"])
    return 0


def _send(client: httpx.Client, images: list[np.ndarray], version: int) -> None:
    before = _rows(client, version)
    for image in images:
        r = client.post(
            "/v1/pipelines/people",
            files={"image": ("x.jpg", encode(image, ".jpg"), "image/jpeg")},
            headers={"X-Canary-Key": "baseline"},
        )
        assert r.status_code == 200, r.text
    wait_for(
        lambda: _rows(client, version) >= before + len(images),
        timeout=90,
        what="captured rows to reach the monitor",
    )


def _status(client: httpx.Client, step: str) -> str:
    out = CliRunner().invoke(app, ["drift", "status", "--url", str(client.base_url)])
    assert out.exit_code == 0, out.output
    mine = [line for line in out.output.splitlines() if "detector" in line or "against" in line]
    print(f"\n$ canaryserve drift status   # after: {step}\n" + "\n".join(mine))
    return out.output


def _report(client: httpx.Client) -> dict[str, Any]:
    r = client.post("/v1/drift/reports", json={"model": "detector"})
    assert r.status_code == 201, r.text
    report: dict[str, Any] = r.json()
    return report


def test_a_baseline_from_the_champion_s_traffic_judges_what_came_after_it(
    client: httpx.Client, store: Any, tmp_path: Path
) -> None:
    champion = store.aliases("detector")["champion"]
    _send(client, evaluation_images(100, seed=21), champion)
    r = client.post("/v1/drift/baselines", json={"model": "detector", "rows": 100})
    assert r.status_code == 201, r.text
    frozen = r.json()
    assert frozen["version"] == champion
    ref = frozen["reference"]
    assert (ref["source"], ref["rows"], ref["baseline"]) == ("traffic", 100, "newest 100 live rows")
    _status(client, "baseline frozen from 100 live rows")
    # A fresh window: no row captured before the freeze is judged against the new reference.
    waiting = _report(client)
    assert waiting["status"] == "insufficient_data"
    assert waiting["verdict"]["current_rows"] == 0

    _send(client, evaluation_images(40, seed=22), champion)
    calm = _report(client)
    assert calm["status"] == "no_drift", calm["verdict"]["drifted_features"]
    assert calm["against"].startswith(f"reference #{ref['n']} (traffic, 100 rows)")
    assert calm["verdict"]["current_rows"] == 40
    _status(client, "40 more real photos")

    dark = [(img * 0.4).astype(np.uint8) for img in evaluation_images(40, seed=23)]
    _send(client, dark, champion)
    drifted = _report(client)
    assert drifted["status"] == "drift", drifted["verdict"]
    assert "brightness" in drifted["verdict"]["drifted_features"]
    assert "input" in drifted["verdict"]["drifted_groups"]
    _status(client, "40 darkened photos (x0.4)")

    # Back to the evaluation set, from a folder of its photos (PNG: the same pixels).
    folder = tmp_path / "evaluation"
    folder.mkdir()
    for i, image in enumerate(evaluation_images(DEFAULT_ROWS["detection"], seed=0)):
        assert cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = CliRunner().invoke(
        app,
        ["drift", "baseline", "detector", "--from-dir", str(folder), "--url", str(client.base_url)],
    )
    assert out.exit_code == 0, out.output
    print(f"\n$ canaryserve drift baseline detector --from-dir {folder.name}/\n{out.output}")
    assert f"from {DEFAULT_ROWS['detection']} rows (images in {folder})" in out.output
    _send(client, evaluation_images(40, seed=24), champion)
    restored = _report(client)
    assert restored["status"] == "no_drift", restored["verdict"]["drifted_features"]
    assert "(dir, 200 rows)" in restored["against"]
    _status(client, "baseline from a folder of the evaluation photos, then 40 real photos")
