"""What runs on the Ray cluster besides requests: the model version apps and the singletons.

- ``versions``: deploy, retire and list model version apps (interface + ``serve.run``
  adapter), and the one place a ``ModelBinding`` is built.
- ``actors``: the named, detached singleton actors (rollout controller, drift monitor).
"""

from serving.cluster.actors import TickingActor, ensure_actor, get_actor, lower_priority
from serving.cluster.versions import (
    LocalVersionApps,
    VersionApps,
    binding,
    running_from_status,
    version_app,
)

__all__ = [
    "LocalVersionApps",
    "TickingActor",
    "VersionApps",
    "binding",
    "ensure_actor",
    "get_actor",
    "lower_priority",
    "running_from_status",
    "version_app",
]
