"""inference.routing.predict: a lost replica's call is sent again, a model's error is not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from serving.inference.routing import predict


class _Handle:
    """Stands in for a DeploymentHandle: ``predict.remote(x)`` answers from a script."""

    def __init__(self, script: list[Callable[[Any], Any]]) -> None:
        self.script = script
        self.calls = 0
        self.predict = self

    def remote(self, item: Any) -> Any:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1

        async def answer() -> Any:
            return step(item)

        return answer()


def _raise(e: BaseException) -> Callable[[Any], Any]:
    def fail(_item: Any) -> Any:
        raise e

    return fail


@pytest.mark.parametrize("lost", [ActorDiedError(), ActorUnavailableError("gone", None)])
def test_a_call_lost_with_its_replica_is_sent_again(lost: Exception) -> None:
    handle = _Handle([_raise(lost), lambda x: x * 2])
    assert asyncio.run(predict(handle, 21)) == 42
    assert handle.calls == 2


def test_a_replica_lost_every_time_fails_after_the_attempts() -> None:
    handle = _Handle([_raise(ActorDiedError())])
    with pytest.raises(ActorDiedError):
        asyncio.run(predict(handle, 1, attempts=3))
    assert handle.calls == 3


def test_what_the_model_raised_is_not_retried() -> None:
    error = RayTaskError("predict", "Traceback ...", ValueError("bad input"))
    handle = _Handle([_raise(error), lambda x: x])
    with pytest.raises(RayTaskError):
        asyncio.run(predict(handle, 1))
    assert handle.calls == 1


def test_an_input_the_model_refuses_is_the_callers_4xx_not_a_model_failure() -> None:
    from serving.canary.split import RoutingDecision
    from serving.config import load_config
    from serving.errors import InvalidInput, ModelFailure
    from serving.inference.routing import CanaryState

    state = CanaryState(load_config(None), {}, {"detector": [1]})
    refused = RayTaskError("predict", "Traceback ...", InvalidInput("image 0 is 1x1"))
    call = state.caller(
        RoutingDecision({}), lambda m, v: _Handle([_raise(refused)]), "r1", versions={"detector": 1}
    )
    with pytest.raises(InvalidInput, match="1x1"):
        asyncio.run(call("detector", [object()]))
    crashed = RayTaskError("predict", "Traceback ...", RuntimeError("CUDA error"))
    call = state.caller(
        RoutingDecision({}), lambda m, v: _Handle([_raise(crashed)]), "r2", versions={"detector": 1}
    )
    with pytest.raises(ModelFailure):
        asyncio.run(call("detector", [object()]))
