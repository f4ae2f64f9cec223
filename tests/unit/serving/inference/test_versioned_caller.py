"""VersionedCaller and CanaryState.decide: what one model call under a rollout accounts for.

The handles are fakes of what the caller calls (a deployment handle answering from a script:
a value, or an exception); the breaker, router and records are the real ones. Time inside the
caller is a fake ``perf_counter`` that advances 0.25 s per read, so every call lasts 250 ms.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from ray.exceptions import ActorDiedError

from serving.canary import ModelRoute
from serving.canary.breaker import Breakers
from serving.canary.split import NodeDecision, RoutingDecision
from serving.config import PlatformConfig
from serving.errors import BadRequest, CanaryError, ModelFailure, VersionNotServed
from serving.inference import routing
from serving.inference.routing import (
    MAX_PENDING_RECORDS,
    CanaryState,
    ChallengerFailed,
    predict,
)


class _Handle:
    """A deployment handle whose ``predict.remote(x)`` answers ``answer(x)`` (or raises it)."""

    def __init__(self, answer: Callable[[Any], Any]) -> None:
        self.answer = answer
        self.calls = 0
        self.predict = self

    def remote(self, item: Any) -> Any:
        self.calls += 1

        async def run() -> Any:
            return self.answer(item)

        return run()


def _fail(e: BaseException) -> Callable[[Any], Any]:
    def raise_(_item: Any) -> Any:
        raise e

    return raise_


def _ok(item: Any) -> Any:
    return ("ok", item)


class _Wrapped(Exception):
    """How Ray hands over what a replica raised: the original is ``.cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("wrapped")
        self.cause = cause


class _ServerSide(CanaryError):
    status_code = 500
    code = "server_side"


@pytest.fixture(autouse=True)
def quarter_second_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter(range(1, 1_000_000))
    monkeypatch.setattr(routing.time, "perf_counter", lambda: next(ticks) * 0.25)


ROUTES = {
    "detector": ModelRoute("detector", 1, 2, 50.0, 0.0, "r-det"),
    "ocr": ModelRoute("ocr", 4, 5, 0.0, 0.0, "r-ocr"),
}


def _state(config: PlatformConfig, cooldown_s: float = 60.0) -> CanaryState:
    state = CanaryState(config, dict(ROUTES), {"detector": [1, 2, 7], "ocr": [4, 5]})
    state.breakers = Breakers(failure_threshold=2, window_s=60.0, cooldown_s=cooldown_s)
    return state


def _half_open(state: CanaryState, version: int) -> Any:
    """Detector ``version``'s breaker, opened by two failures; with cooldown 0 it is half-open."""
    breaker = state.breakers.get("detector", version)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "half_open"
    return breaker


def _node(
    version: int, arm: str, pinned: bool = False, model: str = "detector", key: str | None = None
) -> NodeDecision:
    return NodeDecision(
        model=model,
        version=version,
        arm=arm,  # type: ignore[arg-type]
        pinned=pinned,
        weight=50.0,
        bucket=None,
        key_hash=key,
        sticky=False,
        shadow_version=None,
        champion=1 if model == "detector" else 4,
    )


def _call(
    state: CanaryState,
    nodes: dict[str, NodeDecision],
    handles: dict[tuple[str, int], _Handle],
    model: str = "detector",
    *,
    shadow: bool = False,
    versions: dict[str, int] | None = None,
) -> Any:
    call = state.caller(
        RoutingDecision(nodes), lambda m, v: handles[(m, v)], "rid-9", shadow, versions
    )
    return asyncio.run(call(model, ["x"]))


def _calls(state: CanaryState) -> list[tuple[str, str, str | None, bool | None, float | None]]:
    return [
        (r.rollout_id, r.model, r.arm, r.ok, r.latency_ms)
        for r in state.take_records()
        if r.kind == "call"
    ]


# --- a fresh state ---------------------------------------------------------------------------


def test_a_fresh_state_has_bounded_empty_records_and_no_reconcile_yet(
    config: PlatformConfig,
) -> None:
    state = CanaryState(config, {}, {})
    assert (state.records.maxlen, len(state.records)) == (MAX_PENDING_RECORDS, 0)
    assert state.dropped_records == 0 and state.last_reconcile is None
    breaker = state.breakers.get("detector", 2)
    assert (breaker.failure_threshold, breaker.window_s, breaker.cooldown_s) == (
        config.canary.breaker_failures,
        config.canary.breaker_window_s,
        config.canary.breaker_cooldown_s,
    )


# --- successful calls ------------------------------------------------------------------------


def test_a_champion_call_is_recorded_with_its_latency_and_leaves_breakers_alone(
    config: PlatformConfig,
) -> None:
    state = _state(config, cooldown_s=0.0)
    champion_breaker = _half_open(state, 1)  # cooldown 0: a trial may go
    out = _call(state, {"detector": _node(1, "champion")}, {("detector", 1): _Handle(_ok)})
    assert out == [("ok", "x")]
    assert _calls(state) == [("r-det", "detector", "champion", True, 250.0)]
    assert champion_breaker.state == "half_open"  # only a challenger's success closes one


def test_a_challenger_success_is_recorded_and_closes_its_half_open_breaker(
    config: PlatformConfig,
) -> None:
    state = _state(config, cooldown_s=0.0)
    breaker = _half_open(state, 2)
    _call(state, {"detector": _node(2, "challenger")}, {("detector", 2): _Handle(_ok)})
    assert _calls(state) == [("r-det", "detector", "challenger", True, 250.0)]
    assert breaker.state == "closed"


def test_a_call_for_a_model_whose_route_went_away_mid_request_is_not_recorded(
    config: PlatformConfig,
) -> None:
    state = _state(config)
    call = state.caller(
        RoutingDecision({"detector": _node(1, "champion")}),
        lambda m, v: _Handle(_ok),
        "rid-9",
    )
    state.routes = {}  # a reconcile swapped the routes while the request ran
    assert asyncio.run(call("detector", ["x"])) == [("ok", "x")]
    assert state.take_records() == []


# --- failures --------------------------------------------------------------------------------


def test_a_routed_challenger_that_fails_is_recorded_counted_and_re_run(
    config: PlatformConfig,
) -> None:
    state = _state(config)
    handles = {("detector", 2): _Handle(_fail(RuntimeError("boom")))}
    with pytest.raises(ChallengerFailed) as info:
        _call(state, {"detector": _node(2, "challenger")}, handles)
    assert (info.value.model, info.value.version) == ("detector", 2)
    assert _calls(state) == [("r-det", "detector", "challenger", False, 250.0)]
    breaker = state.breakers.get("detector", 2)
    breaker.record_failure()  # the second failure of a threshold of 2
    assert breaker.state == "open"


def test_a_pinned_challenger_that_fails_is_a_model_failure_logged_with_the_request(
    config: PlatformConfig, caplog: pytest.LogCaptureFixture
) -> None:
    state = _state(config)
    handles = {("detector", 2): _Handle(_fail(RuntimeError("boom")))}
    with caplog.at_level(logging.ERROR), pytest.raises(ModelFailure) as info:
        _call(state, {"detector": _node(2, "challenger", pinned=True)}, handles)
    assert info.value.message == "detector v2 failed"
    # A pin is a probe: served and audited, never rollout evidence, never the breaker's.
    assert _calls(state) == []
    assert state.breakers.get("detector", 2).state == "closed"
    assert [r.getMessage() for r in caplog.records] == [
        "request rid-9: detector v2 failed: RuntimeError('boom')"
    ]


def test_a_failing_champion_is_a_model_failure_and_no_challenger_record(
    config: PlatformConfig, caplog: pytest.LogCaptureFixture
) -> None:
    state = _state(config)
    handles = {("detector", 1): _Handle(_fail(RuntimeError("down")))}
    with caplog.at_level(logging.ERROR), pytest.raises(ModelFailure, match="detector v1 failed"):
        _call(state, {"detector": _node(1, "champion")}, handles)
    assert _calls(state) == []
    assert state.breakers.get("detector", 1).state == "closed"
    assert [r.getMessage() for r in caplog.records] == [
        "request rid-9: detector v1 failed: RuntimeError('down')"
    ]


@pytest.mark.parametrize("wrap", [False, True])
def test_a_champion_refusing_the_input_answers_the_callers_4xx(
    config: PlatformConfig, wrap: bool
) -> None:
    refused = BadRequest("image 0 is 1x1")
    raised = _Wrapped(refused) if wrap else refused
    handles = {("detector", 1): _Handle(_fail(raised))}
    with pytest.raises(BadRequest) as info:
        _call(_state(config), {"detector": _node(1, "champion")}, handles)
    assert info.value is refused


def test_a_champions_5xx_typed_error_is_a_model_failure_not_passed_through(
    config: PlatformConfig,
) -> None:
    handles = {("detector", 1): _Handle(_fail(_ServerSide("replica broke")))}
    with pytest.raises(ModelFailure):
        _call(_state(config), {"detector": _node(1, "champion")}, handles)


def test_a_routed_challenger_refusing_the_input_is_re_run_with_nothing_counted_yet(
    config: PlatformConfig,
) -> None:
    state = _state(config)
    refused = BadRequest("image 0 is 1x1")
    handles = {("detector", 2): _Handle(_fail(_Wrapped(refused)))}
    with pytest.raises(ChallengerFailed) as info:
        _call(state, {"detector": _node(2, "challenger", key="k1")}, handles)
    failure = info.value
    assert (failure.refused, failure.latency_ms, failure.key_hash) == (refused, 250.0, "k1")
    # Until the champions' re-run tells whether the input was at fault, nothing is counted.
    assert _calls(state) == [] and state.breakers.get("detector", 2).state == "closed"
    # The champions took it: the refusal was the challenger's failure after all.
    state.challenger_refused(failure)
    (record,) = state.take_records()
    assert (record.arm, record.ok, record.latency_ms, record.key_hash) == (
        "challenger",
        False,
        250.0,
        "k1",
    )
    state.breakers.get("detector", 2).record_failure()  # the second of a threshold of 2
    assert state.breakers.get("detector", 2).state == "open"


def test_a_refusal_is_not_counted_once_the_rollout_has_moved_on(config: PlatformConfig) -> None:
    state = _state(config)
    state.routes["detector"] = ModelRoute("detector", 1, 3, 50.0, 0.0, "r-next")
    state.challenger_refused(ChallengerFailed("detector", 2, BadRequest("x"), 250.0))
    state.challenger_failed("ocr-gone", 2, 250.0, None)
    assert state.take_records() == []
    assert state.breakers.open_versions() == []


def test_a_pinned_challenger_refusing_the_input_answers_the_callers_4xx(
    config: PlatformConfig,
) -> None:
    state = _state(config)
    refused = BadRequest("image 0 is 1x1")
    handles = {("detector", 2): _Handle(_fail(refused))}
    with pytest.raises(BadRequest) as info:
        _call(state, {"detector": _node(2, "challenger", pinned=True)}, handles)
    assert info.value is refused and state.take_records() == []


def test_calls_the_split_chose_carry_the_routing_keys_digest(config: PlatformConfig) -> None:
    state = _state(config)
    handles = {("detector", 1): _Handle(_ok), ("detector", 2): _Handle(_ok)}
    _call(state, {"detector": _node(1, "champion", key="a")}, handles)
    _call(state, {"detector": _node(2, "challenger", key="b")}, handles)
    failing = {("detector", 2): _Handle(_fail(RuntimeError("boom")))}
    with pytest.raises(ChallengerFailed):
        _call(state, {"detector": _node(2, "challenger", key="c")}, failing)
    assert [(r.arm, r.ok, r.key_hash) for r in state.take_records()] == [
        ("champion", True, "a"),
        ("challenger", True, "b"),
        ("challenger", False, "c"),
    ]


# --- shadows ---------------------------------------------------------------------------------


def test_a_shadow_call_to_the_challenger_is_not_canary_traffic_and_is_not_re_run(
    config: PlatformConfig,
) -> None:
    state = _state(config)
    nodes = {"detector": _node(1, "champion")}
    ok = {("detector", 2): _Handle(_ok)}
    _call(state, nodes, ok, shadow=True, versions={"detector": 2})
    assert _calls(state) == []  # its comparison is recorded by Shadows, nothing else
    failing = {("detector", 2): _Handle(_fail(RuntimeError("boom")))}
    with pytest.raises(ModelFailure):  # not ChallengerFailed: a shadow is never re-run
        _call(state, nodes, failing, shadow=True, versions={"detector": 2})
    assert _calls(state) == []
    assert state.breakers.get("detector", 2).state == "closed"


def test_a_shadow_runs_other_versions_without_counting_them_for_any_rollout(
    config: PlatformConfig,
) -> None:
    state = _state(config)
    nodes = {"detector": _node(1, "champion"), "ocr": _node(4, "champion", model="ocr")}
    versions = {"detector": 2, "ocr": 4}  # the shadow of detector's rollout; ocr's champion
    _call(state, nodes, {("ocr", 4): _Handle(_ok)}, "ocr", shadow=True, versions=versions)
    assert state.take_records() == []
    # Failing, it is still not the challenger's failure (nor the champion's breaker's).
    failing = {("ocr", 4): _Handle(_fail(RuntimeError("x")))}
    with pytest.raises(ModelFailure):
        _call(state, nodes, failing, "ocr", shadow=True, versions=versions)
    assert state.take_records() == []
    assert state.breakers.get("ocr", 4).state == "closed"
    assert state.breakers.open_versions() == []


# --- decisions -------------------------------------------------------------------------------


def test_an_open_breaker_takes_the_challengers_live_and_mirrored_traffic(
    config: PlatformConfig,
) -> None:
    state = _state(config)
    state.routes["detector"] = ModelRoute("detector", 1, 2, 50.0, 1.0, "r-det")
    for _ in range(2):
        state.breakers.get("detector", 2).record_failure()
    decisions = [state.decide(["detector"], {}, f"key-{i}") for i in range(200)]
    assert {d.versions()["detector"] for d in decisions} == {1}
    assert all(d.shadows() == {} for d in decisions)
    assert {d.per_model["detector"].weight for d in decisions} == {0.0}
    kinds = [r.kind for r in state.take_records()]
    assert kinds == ["breaker"] * 200


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_half_open_breakers_one_trial_goes_to_a_request_the_split_sent_to_the_challenger(
    config: PlatformConfig,
) -> None:
    clock = _Clock()
    state = _state(config)
    state.breakers = Breakers(failure_threshold=2, window_s=60.0, cooldown_s=10.0, clock=clock)
    state.routes["detector"] = ModelRoute("detector", 1, 2, 100.0, 0.0, "r-det")
    breaker = state.breakers.get("detector", 2)
    breaker.record_failure()
    breaker.record_failure()
    open_ = state.decide(["detector"], {}, "k0").per_model["detector"]
    assert (open_.version, open_.weight, open_.fallback) == (1, 0.0, False)
    clock.now = 10.0  # the cooldown is over: half-open
    # A pinned probe is served by the challenger but never takes the trial ...
    pinned = state.decide(["detector"], {"detector": 2}, "k1").per_model["detector"]
    assert (pinned.version, pinned.pinned) == (2, True)
    # ... so the trial goes to the first request the split sends to the challenger ...
    trial = state.decide(["detector"], {}, "k2").per_model["detector"]
    assert (trial.version, trial.arm, trial.fallback) == (2, "challenger", False)
    # ... and while it is out, the split's other challenger picks go to the champion.
    held = state.decide(["detector"], {}, "k3").per_model["detector"]
    assert (held.version, held.arm, held.fallback, held.shadow_version) == (
        1,
        "champion",
        True,
        None,
    )
    assert [r.kind for r in state.take_records()] == ["breaker", "breaker"]
    breaker.record_success()  # the trial's answer came back: closed
    assert state.decide(["detector"], {}, "k4").per_model["detector"].version == 2


def test_every_model_of_a_pipeline_gets_its_own_trial_decision(config: PlatformConfig) -> None:
    clock = _Clock()
    state = _state(config)
    state.breakers = Breakers(failure_threshold=1, window_s=60.0, cooldown_s=10.0, clock=clock)
    state.routes["ocr"] = ModelRoute("ocr", 4, 5, 100.0, 0.0, "r-ocr")
    state.breakers.get("ocr", 5).record_failure()
    clock.now = 10.0
    assert state.breakers.get("ocr", 5).allow()  # half-open: this takes the one trial
    # detector (first, routed to its champion) needs no trial; ocr's is out: to its champion.
    state.routes["detector"] = ModelRoute("detector", 1, 2, 0.0, 0.0, "r-det")
    d = state.decide(["detector", "ocr"], {}, "k")
    assert d.versions() == {"detector": 1, "ocr": 4}
    assert d.per_model["ocr"].fallback is True


def test_a_request_the_split_sends_to_the_champion_leaves_the_trial_alone(
    config: PlatformConfig,
) -> None:
    clock = _Clock()
    state = _state(config)
    state.breakers = Breakers(failure_threshold=1, window_s=60.0, cooldown_s=10.0, clock=clock)
    state.routes["detector"] = ModelRoute("detector", 1, 2, 0.0, 0.0, "r-det")
    state.breakers.get("detector", 2).record_failure()
    clock.now = 10.0
    for i in range(5):
        assert state.decide(["detector"], {}, f"k{i}").per_model["detector"].version == 1
    assert state.take_records() == []
    assert state.breakers.get("detector", 2).allow()  # the trial was never handed out


def test_a_pin_to_a_running_version_outside_the_rollout_is_honoured(
    config: PlatformConfig,
) -> None:
    state = _state(config)
    d = state.decide(["detector", "ocr"], {"detector": 7}, "cam").per_model["detector"]
    assert (d.version, d.pinned, d.arm, d.shadow_version) == (7, True, "champion", None)


def test_a_pin_for_a_model_with_no_running_versions_is_refused(config: PlatformConfig) -> None:
    state = CanaryState(config, dict(ROUTES), {"detector": [1, 2]})  # ocr: nothing running
    with pytest.raises(VersionNotServed, match="ocr version 9"):
        state.decide(["ocr"], {"ocr": 9}, None)


# --- predict ---------------------------------------------------------------------------------


def test_predict_tries_three_times_by_default_and_logs_each_lost_replica(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = _Handle(_fail(ActorDiedError()))
    with caplog.at_level(logging.WARNING), pytest.raises(ActorDiedError):
        asyncio.run(predict(handle, 1))
    assert handle.calls == 3
    assert [r.getMessage() for r in caplog.records] == [
        "replica lost (ActorDiedError); sending the item again"
    ] * 2


def test_a_model_without_a_challenger_does_not_stop_the_breaker_check_of_the_next(
    config: PlatformConfig,
) -> None:
    state = _state(config)
    state.routes["ocr"] = ModelRoute("ocr", 4)  # no rollout on ocr
    for _ in range(2):
        state.breakers.get("detector", 2).record_failure()
    d = state.decide(["ocr", "detector"], {}, "key-1")
    assert d.per_model["detector"].weight == 0.0
    assert [r.kind for r in state.take_records()] == ["breaker"]


def test_an_extra_pin_overrides_a_routed_or_mirrored_decision(config: PlatformConfig) -> None:
    state = _state(config)
    state.routes["detector"] = ModelRoute("detector", 1, 2, 100.0, 1.0, "r-det")
    d = state.decide(["detector"], {"detector": 7}, "cam").per_model["detector"]
    assert (d.version, d.pinned, d.arm, d.shadow_version) == (7, True, "champion", None)


def test_an_extra_pin_is_never_mirrored(config: PlatformConfig) -> None:
    state = _state(config)
    state.routes["detector"] = ModelRoute("detector", 1, 2, 0.0, 1.0, "r-det")
    assert state.decide(["detector"], {}, "cam").shadows() == {"detector": 2}
    d = state.decide(["detector"], {"detector": 7}, "cam").per_model["detector"]
    assert (d.version, d.shadow_version) == (7, None)
