"""Drift verdicts' error rates on real photos: false alarms, and detections per shift.

Builds a reference pool (the bootstrap reference's photo draws, seed 0) and disjoint trial pools
(seeds 1 and 2) with :mod:`drift.statistics.trials`, then runs seeded trials (seeds 0..N-1)
of the family rule of :mod:`drift.statistics` at 1 % per report:

    .venv/bin/python -m load_tests.drift_rates [--trials 200] [--current-rows 40]
        [--reference-rows 200] [--detector DIR]

Without ``--detector`` rows hold input features only. With a built detection model directory
(e.g. ``.canaryserve/cache/models/detector-v1-r3``, loaded with the project's model loader) they
also hold its prediction features, and each stream's report names the groups that moved.
A benchmark, not a test: it prints a table and asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from drift.statistics.trials import SHIFTS, Shift, darken, pools, rate

BRIGHTNESS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


def _row(name: str, got: Any, groups: list[str]) -> str:
    named = "  ".join(f"{g} {n.named_rate:5.1%}" for g, n in zip(groups, got, strict=True))
    first = got[0]
    top = sorted(first.features.items(), key=lambda kv: -kv[1])[:4]
    features = ", ".join(f"{k} {v}" for k, v in top if v)
    return f"{name:18s} drift {first.rate:6.1%}  named: {named}  ({features or 'none'})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--reference-rows", type=int, default=200)
    ap.add_argument("--current-rows", type=int, default=40)
    ap.add_argument("--pool", type=int, default=300, help="rows per pool")
    ap.add_argument("--detector", type=Path, default=None, help="a built detection model dir")
    args = ap.parse_args()

    predict = None
    if args.detector is not None:
        from deployments.loader import load_model

        predict = load_model(args.detector).predict
    shifts: dict[str, Shift] = dict(SHIFTS)
    shifts |= {f"brightness x{g}": darken(g) for g in BRIGHTNESS}
    started = time.perf_counter()
    reference = pools(args.pool, seed=0, predict=predict)["none"]
    calm = pools(args.pool, seed=1, predict=predict)["none"]
    shifted = pools(args.pool, seed=2, shifts=shifts, predict=predict)
    built = time.perf_counter() - started
    groups = ["input", "prediction"] if predict is not None else ["input"]
    sizes = {"reference_rows": args.reference_rows, "current_rows": args.current_rows}

    print(
        f"{args.trials} seeded trials per stream, {args.reference_rows} reference rows vs "
        f"{args.current_rows} current rows, family false-alarm rate 1 % per report; "
        f"features: {'input + prediction (' + str(args.detector) + ')' if predict else 'input'}"
        f"; pools built in {built:.1f}s"
    )
    started = time.perf_counter()
    for name, frame in [("unchanged", calm), *((k, shifted[k]) for k in shifts)]:
        got = [rate(reference, frame, args.trials, group=g, **sizes) for g in groups]
        print(_row(name, got, groups))
    print(f"trials judged in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
