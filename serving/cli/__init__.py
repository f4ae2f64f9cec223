"""The ``canaryserve`` command line (typer), one module per command group.

- ``root``: the ``app``: ``bootstrap``, ``serve``, ``predict``, and the groups below.
- ``models``: ``models list|register``; the registry local commands open, the bootstrap.
- ``rollout``: ``rollout start|status|history`` and the actions ``pause|resume|promote|abort``.
- ``drift``: ``drift status|report``.
- ``audit``: ``audit show|query|purge``; the record of admin actions done from the CLI.
- ``keys``: ``keys add|list|revoke``; the auth line ``serve`` prints.
- ``api``: the ``--url`` option, the one HTTP call, and how an error ends a command.
- ``config``: the ``--config`` option, the config and the data dir of the local commands.

Heavy imports (ray, httpx, mlflow, sqlalchemy) happen inside the commands, so that
``canaryserve --help`` stays fast.
"""

from serving.cli.root import app

__all__ = ["app"]
