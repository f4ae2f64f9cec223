"""The canary split, pure: no Ray, no HTTP, no clock reads of its own.

- ``split``: the per-request weighted / sticky / pinned choice of versions (``Router``).
- ``routes``: which versions serve each model (start-up table, rollout routes, their merge).
- ``breaker``: the circuit breaker per challenger version.
- ``compare``: how much two versions' answers to the same input agree.
- ``records``: what the ingress reports to the rollout controller.
"""

from serving.canary.breaker import Breakers, CircuitBreaker
from serving.canary.compare import agreement
from serving.canary.records import RolloutRecord
from serving.canary.routes import RolloutRoute, VersionTable, build_routes, routes_from_table
from serving.canary.split import ModelRoute, NodeDecision, Router, RoutingDecision, key_hash

__all__ = [
    "Breakers",
    "CircuitBreaker",
    "ModelRoute",
    "NodeDecision",
    "RolloutRecord",
    "RolloutRoute",
    "Router",
    "RoutingDecision",
    "VersionTable",
    "agreement",
    "build_routes",
    "key_hash",
    "routes_from_table",
]
