"""Per-request version choice for every model of a pipeline: champion, challenger or pin.

The decision is made once per request, before the first node runs, and then holds for every
node, so a response never mixes versions of one model. With a routing key (a camera id, a
tenant) the split is *sticky*: the key's bucket is a hash of (rollout id, key), the same on every
replica and after restarts, and a key goes to the challenger iff its bucket is below
``weight * 100``. Raising the weight therefore only moves keys toward the challenger, never back,
which keeps per-key metrics of a canary step comparable with the next step.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from serving.errors import UnknownModel, VersionNotServed

BUCKETS = 10_000  # one bucket is 0.01 % of the traffic
Arm = Literal["champion", "challenger"]


@dataclass(frozen=True)
class ModelRoute:
    model: str
    champion: int
    challenger: int | None = None
    weight: float = 0.0  # percent (0..100) of the traffic sent to the challenger
    shadow_share: float = 0.0  # 0..1 share of champion-served requests mirrored to the challenger
    rollout_id: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 100.0:
            raise ValueError(f"{self.model}: weight {self.weight!r} is not a percent in [0, 100]")
        if not 0.0 <= self.shadow_share <= 1.0:
            raise ValueError(f"{self.model}: shadow_share {self.shadow_share!r} is not in [0, 1]")
        if self.challenger is not None and self.challenger == self.champion:
            raise ValueError(f"{self.model}: challenger {self.challenger} is also the champion")

    @property
    def served(self) -> list[int]:
        return [self.champion] if self.challenger is None else [self.champion, self.challenger]


def bucket(rollout_id: str, key: str) -> int:
    """Bucket in ``[0, 10000)`` of ``key`` for one rollout; a new rollout id reshuffles keys."""
    digest = hashlib.sha256((rollout_id + "\x00" + key).encode()).hexdigest()
    return int(digest, 16) % BUCKETS


def key_hash(key: str) -> str:
    """Short digest of a routing key for audit records: the raw key (a tenant) is never stored."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class NodeDecision:
    model: str
    version: int
    arm: Arm
    pinned: bool
    weight: float
    bucket: int | None  # set when a routing key decided the arm
    key_hash: str | None
    sticky: bool
    shadow_version: int | None  # challenger version to mirror this request to
    champion: int  # kept so the request can be re-run on champions after a challenger failure
    fallback: bool = False  # True once a challenger decision was moved back to the champion


@dataclass(frozen=True)
class RoutingDecision:
    per_model: dict[str, NodeDecision]

    def versions(self) -> dict[str, int]:
        return {m: d.version for m, d in self.per_model.items()}

    def shadows(self) -> dict[str, int]:
        return {
            m: d.shadow_version for m, d in self.per_model.items() if d.shadow_version is not None
        }

    def challengers(self) -> list[str]:
        return [m for m, d in self.per_model.items() if d.arm == "challenger"]

    def with_champions(self) -> RoutingDecision:
        """The same request with every routed challenger moved to its champion, shadows dropped.

        Pins are kept as they are: a caller who pinned a version gets that version or an error,
        never a silent fallback. Mirrors are dropped because the re-run answers a request that
        already failed once; doubling its load on a failing challenger helps nobody.
        """
        moved: dict[str, NodeDecision] = {}
        for m, d in self.per_model.items():
            if d.pinned:
                moved[m] = d
            elif d.arm == "challenger":
                moved[m] = replace(
                    d, version=d.champion, arm="champion", shadow_version=None, fallback=True
                )
            else:
                moved[m] = replace(d, shadow_version=None)
        return RoutingDecision(moved)

    def to_dict(self) -> dict[str, Any]:
        return {m: asdict(d) for m, d in self.per_model.items()}


class Router:
    """Stateless apart from its RNG (used for key-less splits and shadow sampling)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()

    def decide(
        self,
        models: list[str],
        routes: dict[str, ModelRoute],
        pins: dict[str, int],
        key: str | None,
    ) -> RoutingDecision:
        for name in pins:
            if name not in routes:
                raise UnknownModel(f"pinned model {name!r} is not served; served: {sorted(routes)}")
        digest = key_hash(key) if key is not None else None
        per_model: dict[str, NodeDecision] = {}
        for model in models:
            route = routes.get(model)
            if route is None:
                raise UnknownModel(f"model {model!r} is not served; served: {sorted(routes)}")
            if model in pins:
                per_model[model] = self._pinned(route, pins[model], digest)
            else:
                per_model[model] = self._split(route, key, digest)
        return RoutingDecision(per_model)

    def _pinned(self, route: ModelRoute, version: int, digest: str | None) -> NodeDecision:
        if version not in route.served:
            raise VersionNotServed(
                f"{route.model} version {version} has no deployment; served versions: "
                f"{route.served}"
            )
        arm: Arm = "challenger" if version == route.challenger else "champion"
        return NodeDecision(
            model=route.model,
            version=version,
            arm=arm,
            pinned=True,
            weight=route.weight,
            bucket=None,
            key_hash=digest,
            sticky=False,
            shadow_version=None,  # a pinned request is a deliberate probe; never mirror it
            champion=route.champion,
        )

    def _split(self, route: ModelRoute, key: str | None, digest: str | None) -> NodeDecision:
        b: int | None = None
        challenger = route.challenger
        if challenger is None or route.weight <= 0:
            to_challenger = False
        elif key is not None:
            # Without a rollout id the model name salts the hash, so keys still spread.
            b = bucket(route.rollout_id or route.model, key)
            to_challenger = b < round(route.weight * 100)
        else:
            to_challenger = self._rng.random() * 100 < route.weight
        shadow: int | None = None
        if (
            challenger is not None
            and not to_challenger
            and route.shadow_share > 0
            and self._rng.random() < route.shadow_share
        ):
            shadow = challenger
        return NodeDecision(
            model=route.model,
            version=challenger if to_challenger and challenger is not None else route.champion,
            arm="challenger" if to_challenger else "champion",
            pinned=False,
            weight=route.weight,
            bucket=b,
            key_hash=digest,
            sticky=b is not None,
            shadow_version=shadow,
            champion=route.champion,
        )
