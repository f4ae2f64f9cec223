"""Test order: random (pytest-randomly, seed in the header), unit modules before integration.

pytest-randomly shuffles modules and the tests inside them from one seed, printed as
``Using --randomly-seed=N``; ``make test PYTEST_ARGS=--randomly-seed=N`` replays
an order. Every test sets up the state it needs. The one ordering kept on purpose: unit tests
run before the integration ones, so no Ray cluster is alive while they run (they refuse
``ray.init``, and a live session cluster would answer their Ray calls instead).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Runs after pytest-randomly's shuffle (it wraps this hook); a stable sort keeps its order
    # inside each group.
    items.sort(key=lambda item: "tests/integration/" in item.nodeid)
