"""The data plane: what happens to one inference request, in plain Python.

- ``context``: the typed request context, the input source and the one ``Outcome`` value.
- ``plane``: ``DataPlane``: admission, the routing decision, the DAG run with champion
  fallback and timeout, shadows, drift capture; and ``audit_record``.
- ``routing``: ``CanaryState``: the replica's current routes, decisions and model calls.
- ``shadow``: mirrored requests to challengers, capped, off the caller's path.
- ``admission``: in-flight limit per ingress replica.
- ``reconcile``: the background loops that follow the registry and the rollout controller.

Ray enters only through the handle source and the rollout link handed in by the ingress.
"""

from serving.inference.admission import Admission
from serving.inference.context import InputSource, Outcome, RequestContext
from serving.inference.plane import DataPlane, audit_record
from serving.inference.reconcile import Reconciler, RolloutLink
from serving.inference.routing import CanaryState, ChallengerFailed, HandleSource, predict
from serving.inference.shadow import Shadows

__all__ = [
    "Admission",
    "CanaryState",
    "ChallengerFailed",
    "DataPlane",
    "HandleSource",
    "InputSource",
    "Outcome",
    "Reconciler",
    "RequestContext",
    "RolloutLink",
    "Shadows",
    "audit_record",
    "predict",
]
