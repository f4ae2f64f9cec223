"""Drift verdicts' error rates on real photos: false alarms, and detections per shift and group.

Builds a reference pool (the bootstrap reference's photo draws, seed 0) and disjoint trial pools
(seeds 1 and 2) with :mod:`drift.statistics.trials`, then runs seeded trials (seeds 0..N-1)
of the family rule of :mod:`drift.statistics` at 1 % per report:

    .venv/bin/python -m load_tests.drift_rates [--trials 200] [--current-rows 40]
        [--reference-rows 200] [--detector DIR] [--no-embeddings]

Rows hold input features, and embeddings (the embedding group: one MMD hypothesis) when the
cache has the embedder (``make install`` / bootstrap build it; ``--no-embeddings`` leaves them
out). With ``--detector`` (a built detection model directory, e.g.
``.canaryserve/cache/models/detector-v1-r3``, loaded with the project's model loader) they
also hold its prediction features. For each stream the table gives how often the report drifted
and how often it named each group. Besides the shifts that move the cheap features it runs the
histogram-matched scene (:func:`drift.statistics.trials.matched_scene`), which only the
embedding should see. A benchmark, not a test: it prints a table and asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from drift.embeddings import default_embedder
from drift.statistics.trials import SCENE_SHIFTS, SHIFTS, Rate, Shift, darken, pools, rate

BRIGHTNESS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


def _row(name: str, got: list[Rate]) -> str:
    named = "  ".join(f"{n.group} {n.named_rate:6.1%}" for n in got)
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
    ap.add_argument("--no-embeddings", action="store_true", help="leave the embedding group out")
    args = ap.parse_args()

    predict = None
    if args.detector is not None:
        from deployments.loader import load_model

        predict = load_model(args.detector).predict
    embedder = None if args.no_embeddings else default_embedder()
    if embedder is not None and not embedder.available:
        print(f"no embedder at {embedder.path}: rows without embeddings")
        embedder = None
    shifts: dict[str, Shift] = {**SHIFTS, **SCENE_SHIFTS}
    shifts |= {f"brightness x{g}": darken(g) for g in BRIGHTNESS}
    started = time.perf_counter()
    reference = pools(args.pool, seed=0, predict=predict, embedder=embedder)["none"]
    calm = pools(args.pool, seed=1, predict=predict, embedder=embedder)["none"]
    shifted = pools(args.pool, seed=2, shifts=shifts, predict=predict, embedder=embedder)
    seconds = time.perf_counter() - started
    groups = ["input", *(["prediction"] if predict else []), *(["embedding"] if embedder else [])]
    sizes = {"reference_rows": args.reference_rows, "current_rows": args.current_rows}

    print(
        f"{args.trials} seeded trials per stream, {args.reference_rows} reference rows vs "
        f"{args.current_rows} current rows, family false-alarm rate 1 % per report; "
        f"groups: {', '.join(groups)}"
        f"{' (detector ' + str(args.detector) + ')' if predict else ''}"
        f"; pools built in {seconds:.1f}s"
    )
    started = time.perf_counter()
    for name, frame in [("unchanged", calm), *((k, shifted[k]) for k in shifts)]:
        got = [rate(reference, frame, args.trials, group=g, **sizes) for g in groups]
        print(_row(name, got))
    print(f"trials judged in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
