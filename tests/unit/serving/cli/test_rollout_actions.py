"""``rollout pause|resume|promote|abort ID`` each POST their action for that rollout."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from serving.cli import app, rollout

runner = CliRunner()


@pytest.mark.parametrize("action", ["pause", "resume", "promote", "abort"])
def test_action_posts_to_the_rollout_and_prints_it(
    action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str, str]] = []

    def fake_api(method: str, url: str, path: str, **kw: Any) -> dict[str, Any]:
        calls.append((method, url, path))
        return {"id": "detector-7", "spec": {"model": "detector"}, "state": "paused"}

    monkeypatch.setattr(rollout, "api", fake_api)
    result = runner.invoke(app, ["rollout", action, "detector-7", "--url", "http://svc:9"])
    assert result.exit_code == 0, result.output
    assert calls == [("POST", "http://svc:9", f"/v1/rollouts/detector-7/{action}")]
    assert result.output.startswith("detector-7")


def test_every_action_is_a_command_with_its_own_help() -> None:
    for action, help_text in rollout.ACTIONS:
        result = runner.invoke(app, ["rollout", action, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert help_text in result.output
