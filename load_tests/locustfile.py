"""Locust scenario: callers of the `inspect` pipeline, each with its own sticky canary key.

    locust -f load_tests/locustfile.py --host http://127.0.0.1:8000 --headless -u 8 -r 4 -t 2m

Run by load_tests/rollout_load.py while a rollout promotes and another rolls back.
"""

from __future__ import annotations

import random
from pathlib import Path

from locust import HttpUser, between, task

IMAGE = Path(__file__).with_name("inspect.png")


class InspectCaller(HttpUser):
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        self.key = f"camera-{random.randrange(1_000_000)}"
        self.image = IMAGE.read_bytes()

    @task
    def inspect(self) -> None:
        with self.client.post(
            "/v1/pipelines/inspect",
            files={"image": ("inspect.png", self.image, "image/png")},
            headers={"X-Canary-Key": self.key},
            name="/v1/pipelines/inspect",
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")
            elif "detector" not in r.json().get("model_versions", {}):
                r.failure("response does not say which detector version served it")
