"""Rollout verdicts on synthetic traffic: wrong rollbacks, catches and requests to a verdict.

No Ray, no HTTP: seeded request streams drive the controller's own state machine
(``serving.rollouts.machine.tick``) and checks, window by window, exactly as the controller
does (one look per tick, stats covering the window since ``window_started_at``). Each tick's
requests are drawn as counts (binomial per arm), so 200 rollouts take a fraction of a second;
``through_records=True`` sends every request as a ``RolloutRecord`` through ``RolloutStats``
instead (slower, same verdicts: a unit test checks it).

Three designs, same traffic, same rollout steps (``[10, 25, 50, 100]``), ``min_requests`` 20,
``error_rate`` threshold 0.05:

- ``sequential``: ``method: sequential`` (SPRT, alpha = beta = 0.02), judged on the evidence
  of every window so far, in 10 s windows;
- ``window-60s``: ``method: window``, each 60 s window (the default interval) judged alone,
  rollback after 2 failed windows (the default ``threshold``);
- ``window-80s``: the same with 80 s windows: of the fixed-window designs tried (60/80/100 s
  windows, thresholds 0.04/0.05, rollback after 1 or 2 failed windows; 400 seeds), the
  cheapest that holds both error rates within the 2% the sequential design is built for
  (60 s windows miss about 2.4% of the bad challengers).

    .venv/bin/python -m load_tests.rollout_simulation [--rollouts 200]

prints, per design: the share of rollouts of a challenger equal to the champion that were
rolled back (wrong), of one with 3x its error rate that were caught, the median requests
(both arms) to the verdict, and the median requests the bad challenger served itself.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.canary.records import RolloutRecord
from serving.rollouts import machine
from serving.rollouts.checks import ArmStats, WindowStats
from serving.rollouts.spec import RolloutSpec, parse_rollout_spec
from serving.rollouts.stats import RolloutStats

T0 = 1_700_000_000.0
BASE_RATE = 0.02  # the champion's error rate
BAD_RATE = 3 * BASE_RATE
TICK_S = 10.0  # the controller looks this often
REQUESTS_PER_TICK = 100  # both arms together (10 requests/s)
MAX_REQUESTS = 200_000  # a rollout still running after this many is counted undecided


DESIGNS = {"sequential": ("sequential", "10s"), "window-60s": ("window", "60s")}
DESIGNS["window-80s"] = ("window", "80s")


def design(name: str) -> RolloutSpec:
    """The rollout spec of one design (only the count-based check and the interval differ)."""
    if name not in DESIGNS:
        raise ValueError(f"unknown design {name!r}; known: {sorted(DESIGNS)}")
    method, interval = DESIGNS[name]
    check = {"name": "error_rate", "threshold": 0.05, "method": method}
    raw: dict[str, Any] = {"model": "sim", "challenger_version": 2, "min_requests": 20}
    return parse_rollout_spec({**raw, "interval": interval, "checks": [check]})


@dataclass(frozen=True)
class Outcome:
    verdict: str  # promoted, rolled_back, or undecided (still running at MAX_REQUESTS)
    requests: int  # both arms, until the verdict
    challenger_requests: int


def _records(rid: str, now: float, arm: str, requests: int, errors: int) -> list[RolloutRecord]:
    return [
        RolloutRecord(
            rollout_id=rid,
            model="sim",
            ts=now,
            kind="call",
            arm=arm,
            ok=i >= errors,  # type: ignore[arg-type]
        )
        for i in range(requests)
    ]


def simulate(
    spec: RolloutSpec,
    challenger_rate: float,
    seed: int,
    *,
    base_rate: float = BASE_RATE,
    through_records: bool = False,
) -> Outcome:
    """One rollout of ``spec`` on a seeded stream; its verdict and the requests it took."""
    rng = np.random.default_rng(seed)
    r, _ = machine.start(spec, 1, f"sim-{seed}", T0)
    r, _, _ = machine.activate(r, T0)
    records = RolloutStats() if through_records else None
    now, total, exposed = T0, 0, 0
    window = np.zeros(4, dtype=np.int64)  # champion requests, errors, challenger ones
    started = machine.window_started_at(r)
    while r.state in machine.RUNNING_STATES and total < MAX_REQUESTS:
        now += TICK_S
        n1 = int(rng.binomial(REQUESTS_PER_TICK, r.weight / 100))
        n0 = REQUESTS_PER_TICK - n1
        e0, e1 = int(rng.binomial(n0, base_rate)), int(rng.binomial(n1, challenger_rate))
        total, exposed = total + REQUESTS_PER_TICK, exposed + n1
        if records is not None:
            ts = now - TICK_S / 2
            records.add(_records(r.id, ts, "champion", n0, e0))
            records.add(_records(r.id, ts, "challenger", n1, e1))
            stats = records.window(r.id, started)
        else:
            window += (n0, e0, n1, e1)
            stats = WindowStats(
                champion=ArmStats(requests=int(window[0]), errors=int(window[1])),
                challenger=ArmStats(requests=int(window[2]), errors=int(window[3])),
            )
        r, _, _ = machine.tick(r, stats, now)
        if machine.window_started_at(r) != started:
            started, window = machine.window_started_at(r), np.zeros(4, dtype=np.int64)
    verdict = r.state if r.state in machine.ENDED_STATES else "undecided"
    return Outcome(verdict, total, exposed)


@dataclass(frozen=True)
class Summary:
    design: str
    wrong_rollbacks: float  # share of equal challengers rolled back
    caught: float  # share of 3x challengers rolled back
    median_requests_good: float
    median_requests_bad: float
    median_exposure_bad: float  # the bad challenger's own requests until it was judged

    def line(self) -> str:
        return (
            f"{self.design:<12}{self.wrong_rollbacks:>15.1%} {self.caught:>8.1%} "
            f"{self.median_requests_good:>18,.0f} {self.median_requests_bad:>17,.0f} "
            f"{self.median_exposure_bad:>21,.0f}"
        )


def summarise(name: str, rollouts: int) -> Summary:
    """``rollouts`` seeded rollouts (seeds 0..rollouts-1) of each challenger under ``name``."""
    spec = design(name)
    good = [simulate(spec, BASE_RATE, seed) for seed in range(rollouts)]
    bad = [simulate(spec, BAD_RATE, seed) for seed in range(rollouts)]
    return Summary(
        name,
        sum(o.verdict == "rolled_back" for o in good) / rollouts,
        sum(o.verdict == "rolled_back" for o in bad) / rollouts,
        statistics.median(o.requests for o in good),
        statistics.median(o.requests for o in bad),
        statistics.median(o.challenger_requests for o in bad),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=200, help="per design and challenger")
    args = parser.parse_args(argv)
    print(
        f"{args.rollouts} rollouts per row; champion error rate {BASE_RATE:.0%}, bad challenger "
        f"{BAD_RATE:.0%}; {REQUESTS_PER_TICK} requests per {TICK_S:g}s tick; steps "
        f"{design('sequential').weights()}"
    )
    print(
        "design       wrong rollbacks   caught  median req (good)  median req (bad)  "
        "bad's own req (median)"
    )
    for name in DESIGNS:
        print(summarise(name, args.rollouts).line())


if __name__ == "__main__":
    main()
