"""canaryserve's serving platform, read from the entry points down (imports only point down).

- ``cli/``: the ``canaryserve`` command.
- ``app``: app assembly: plan the versions from the config and the registry, register the
  plug-in checks, deploy the version apps, the singletons and the ingress.
- ``http/``: the FastAPI app on Serve: routes by audience, the gate, errors, bodies.
- ``inference/``: the data plane: one request, decided once, run, fallen back, shadowed.
- ``rollouts/``: the control plane: rollout specs, checks, state machine, controller actor.
- ``cluster/``: model version apps (deploy / retire / list) and the singleton actors.
- ``config``: the one config file.
- ``pipelines/``: DAG spec, ops, executor, tracker.
- ``audit/``, ``access/``: the audit trail; API keys, roles, admin actions.
- ``canary/``: the pure split: router, routes, records, breaker, answer comparison.
- ``errors``, ``metrics``, ``flusher``, ``schema``: the ground floor.

Nothing is imported here: each entry point loads only what it uses.
"""

__all__ = [
    "access",
    "app",
    "audit",
    "canary",
    "cli",
    "cluster",
    "config",
    "errors",
    "flusher",
    "http",
    "inference",
    "metrics",
    "pipelines",
    "rollouts",
    "schema",
]
