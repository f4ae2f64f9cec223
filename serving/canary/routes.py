"""Which versions serve each model: at start-up (``VersionTable``), and under a rollout.

The rollout controller says, per model under rollout, which challenger gets how much traffic
(:class:`RolloutRoute`); the ingress combines that with the registry's aliases and the version
apps that are running into one :class:`~serving.canary.split.ModelRoute` per model
(:func:`build_routes`). Both cross an actor boundary, so both are typed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from serving.canary.split import ModelRoute


@dataclass
class VersionTable:
    served: dict[str, list[int]]  # model -> versions with a live deployment
    default: dict[str, int]  # model -> version that answers when nothing is pinned
    aliases: dict[str, dict[str, int]] = field(default_factory=dict)


class RolloutRoute(BaseModel):
    """What the ingress needs of one active rollout (the controller's ``routes()``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rollout_id: str
    champion: int
    challenger: int
    weight: float = Field(ge=0, le=100, description="Percent of live traffic to the challenger.")
    shadow_share: float = Field(ge=0, le=1, description="Share of champion traffic mirrored.")
    shadow_max_concurrency: int = Field(default=0, ge=0)
    state: str = Field(description="The rollout's state: shadow, progressing or paused.")


def routes_from_table(table: VersionTable) -> dict[str, ModelRoute]:
    """Routes with no traffic split: the table's default is the champion, and the registry's
    ``challenger`` alias (when it has a deployment) is reachable by pin only."""
    routes: dict[str, ModelRoute] = {}
    for model, served in table.served.items():
        champion = table.default[model]
        challenger = table.aliases.get(model, {}).get("challenger")
        if challenger not in served or challenger == champion:
            challenger = None
        routes[model] = ModelRoute(model=model, champion=champion, challenger=challenger)
    return routes


def build_routes(
    models: Iterable[str],
    current: Mapping[str, ModelRoute],
    aliases: Mapping[str, Mapping[str, int]],
    running: Mapping[str, list[int]],
    rollouts: Mapping[str, RolloutRoute],
) -> dict[str, ModelRoute]:
    """New routes from the registry's aliases, the running version apps and the rollouts."""
    routes: dict[str, ModelRoute] = {}
    for model in models:
        run = running.get(model, [])
        now = current.get(model)
        champion = aliases.get(model, {}).get("champion")
        if champion not in run:
            # The alias moved to a version whose replicas are not up yet: keep serving
            # what we had rather than failing requests.
            champion = now.champion if now is not None else (run[0] if run else None)
        if champion is None:
            continue
        ro = rollouts.get(model)
        if ro is not None and ro.challenger in run and ro.challenger != champion:
            routes[model] = ModelRoute(
                model, champion, ro.challenger, ro.weight, ro.shadow_share, ro.rollout_id
            )
        else:
            routes[model] = ModelRoute(model, champion)
    return routes
