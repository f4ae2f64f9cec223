from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from serving.errors import InvalidRolloutSpec
from serving.rollouts.spec import RolloutSpec, parse_duration, parse_rollout_spec


def _spec(**kw: object) -> RolloutSpec:
    return parse_rollout_spec({"model": "detector", "challenger_version": 3, **kw})


def test_defaults() -> None:
    spec = _spec()
    assert spec.mode == "canary"
    assert spec.weights() == [10, 25, 50, 100]
    assert spec.interval_s == 60.0 and spec.progress_deadline_s == 600.0
    assert (spec.threshold, spec.min_requests) == (2, 20)
    assert (spec.shadow_share, spec.shadow_max_concurrency, spec.shadow_steps) == (0.2, 2, 1)
    assert spec.max_requests_per_key == 20
    assert [(c.name, c.threshold, c.sequential) for c in spec.checks] == [
        ("error_rate", 0.05, True),
        ("latency_quantile", 2.0, False),
        ("shadow_agreement", 0.8, True),
    ]
    assert {(c.method, c.alpha, c.beta, c.ratio) for c in spec.checks} == {(None, 0.02, 0.02, 3.0)}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        (" 1.5m ", 90.0),
        ("90", 90.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5x", "", "m", "-5s", "10 s", "1d", True, None, -1, math.inf])
def test_parse_duration_refuses_and_quotes(bad: object) -> None:
    with pytest.raises(InvalidRolloutSpec) as e:
        parse_duration(bad)  # type: ignore[arg-type]
    assert repr(bad) in e.value.message


def test_durations_in_a_spec() -> None:
    spec = _spec(interval="2m", progress_deadline="1h")
    assert (spec.interval_s, spec.progress_deadline_s) == (120.0, 3600.0)
    # The stored names are accepted too, so a dumped spec reads back.
    assert _spec(interval_s=5, progress_deadline_s=10).interval_s == 5.0


def test_bad_interval_is_quoted_with_its_field() -> None:
    with pytest.raises(InvalidRolloutSpec) as e:
        _spec(interval="soon")
    assert "interval: not a duration: 'soon'" in e.value.message


def test_zero_interval_is_refused() -> None:
    with pytest.raises(InvalidRolloutSpec, match=r"interval: Input should be greater than 0"):
        _spec(interval="0s")


def test_deadline_shorter_than_interval_is_refused() -> None:
    with pytest.raises(InvalidRolloutSpec, match=r"progress_deadline \(30.0s\) is shorter"):
        _spec(interval="1m", progress_deadline="30s")


def test_explicit_step_weights_are_taken_literally() -> None:
    assert _spec(step_weights=[5, 20, 100]).weights() == [5, 20, 100]
    assert _spec(step_weights=[100]).weights() == [100]


def test_step_weights_must_end_at_100() -> None:
    with pytest.raises(InvalidRolloutSpec) as e:
        _spec(step_weights=[10, 50])
    msg = e.value.message
    assert "step_weights" in msg and "must be 100" in msg and "got 50" in msg


@pytest.mark.parametrize(
    ("steps", "expect"),
    [
        ([10, 10, 100], "increase strictly: 10.0 then 10.0"),
        ([50, 20, 100], "increase strictly: 50.0 then 20.0"),
        ([0, 100], "weight 0.0 is not in (0, 100]"),
        ([10, 150], "weight 150.0 is not in (0, 100]"),
        ([], "empty"),
    ],
)
def test_bad_step_weights(steps: list[float], expect: str) -> None:
    with pytest.raises(InvalidRolloutSpec) as e:
        _spec(step_weights=steps)
    assert expect in e.value.message


@pytest.mark.parametrize(
    ("step", "top", "weights"),
    [
        (10, 50, [10, 20, 30, 40, 50, 100]),  # Flagger's max_weight, then a step at 100
        (30, 50, [30, 50, 100]),  # the last step is clamped to max_weight
        (25, None, [25, 50, 75, 100]),  # max_weight defaults to 100
        (40, 100, [40, 80, 100]),
        (100, None, [100]),
        (0.1, 0.3, [0.1, 0.2, 0.3, 100]),  # no float drift (0.30000000000000004)
    ],
)
def test_step_weight_and_max_weight(step: float, top: float | None, weights: list[float]) -> None:
    kw: dict[str, object] = {"step_weight": step}
    if top is not None:
        kw["max_weight"] = top
    assert _spec(**kw).weights() == weights


@pytest.mark.parametrize(
    ("kw", "expect"),
    [
        ({"step_weights": [50, 100], "step_weight": 10}, "not both"),
        ({"max_weight": 50}, "max_weight (50.0) needs step_weight"),
        ({"step_weight": 60, "max_weight": 50}, "step_weight (60.0) is above max_weight (50.0)"),
        ({"step_weight": 0.5}, "more than 100 steps"),
    ],
)
def test_step_options_that_do_not_fit(kw: dict[str, object], expect: str) -> None:
    with pytest.raises(InvalidRolloutSpec) as e:
        _spec(**kw)
    assert expect in e.value.message


def test_unknown_check_is_refused_at_parse_time() -> None:
    with pytest.raises(InvalidRolloutSpec) as e:
        _spec(checks=[{"name": "eror_rate", "threshold": 0.1}])
    msg = e.value.message
    assert "checks.0.name" in msg and "'eror_rate'" in msg and "'error_rate'" in msg


def test_listed_checks_replace_the_defaults() -> None:
    spec = _spec(checks=[{"name": "error_rate", "threshold": 0.01, "min_samples": 100}])
    assert [(c.name, c.threshold, c.min_samples) for c in spec.checks] == [
        ("error_rate", 0.01, 100)
    ]


@pytest.mark.parametrize(
    ("checks", "expect"),
    [
        (
            [{"name": "error_rate", "threshold": 0.1}, {"name": "error_rate", "threshold": 0.2}],
            "'error_rate' is listed twice",
        ),
        (
            [{"name": "circuit_breaker", "threshold": 0, "enabled": False}],
            "cannot be disabled",
        ),
        ([{"name": "error_rate", "threshold": 5}], "fraction in [0, 1], got 5.0"),
        ([{"name": "shadow_agreement", "threshold": -0.1}], "got -0.1"),
        ([{"name": "latency_p99_ratio", "threshold": 0}], "must be > 0, got 0.0"),
        ([{"name": "error_rate", "threshold": 0.1, "min_samples": 0}], "min_samples"),
    ],
)
def test_bad_checks(checks: list[dict[str, object]], expect: str) -> None:
    with pytest.raises(InvalidRolloutSpec) as e:
        _spec(checks=checks)
    assert expect in e.value.message


def test_every_bad_value_is_listed_with_its_location() -> None:
    with pytest.raises(InvalidRolloutSpec) as e:
        parse_rollout_spec(
            {
                "model": "",
                "challenger_version": 0,
                "mode": "blue-green",
                "min_requests": "lots",
                "shadow_share": 1.5,
            }
        )
    msg = e.value.message
    for loc, bad in [
        ("model", "''"),
        ("challenger_version", "0"),
        ("mode", "'blue-green'"),
        ("min_requests", "'lots'"),
        ("shadow_share", "1.5"),
    ]:
        assert f"  {loc}: " in msg and bad in msg, (loc, msg)
    assert e.value.status_code == 422


def test_extra_keys_are_refused() -> None:
    with pytest.raises(InvalidRolloutSpec, match="stepweights: Extra inputs"):
        _spec(stepweights=[100])


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidRolloutSpec, match="mapping, got list"):
        parse_rollout_spec([])  # type: ignore[arg-type]


def test_spec_is_frozen_and_round_trips() -> None:
    spec = _spec(mode="shadow-then-canary", step_weight=20, max_weight=60, interval="45s")
    with pytest.raises(ValidationError):
        spec.threshold = 5  # type: ignore[misc]
    again = RolloutSpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec and again.weights() == [20, 40, 60, 100]
