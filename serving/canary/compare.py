"""How far a shadowed challenger's output agrees with the champion's on the same input.

Every function returns a score in ``[0, 1]`` (1 = the same answer) so the rollout controller can
hold one threshold per op output kind. The champion's output is passed first and is the
reference where the measure is asymmetric (CER).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import zip_longest
from typing import Any

from deployments.types import Detection, TextLine, TrackAction

Box = tuple[float, float, float, float]


def box_iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detection_agreement(a: Sequence[Detection], b: Sequence[Detection], iou: float = 0.5) -> float:
    """F1 of a one-to-one greedy matching: pairs of the same label with IoU >= ``iou``, best
    first. Both empty -> 1.0 (they agree there is nothing); one empty -> 0.0."""
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    pairs: list[tuple[float, int, int]] = []
    for i, da in enumerate(a):
        for j, db in enumerate(b):
            if da.label != db.label:
                continue
            overlap = box_iou(da.box, db.box)
            if overlap >= iou:
                pairs.append((overlap, i, j))
    pairs.sort(key=lambda p: -p[0])
    used_a: set[int] = set()
    used_b: set[int] = set()
    for _, i, j in pairs:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
    return 2 * len(used_a) / (len(a) + len(b))


def frame_detection_agreement(
    a: Sequence[Sequence[Detection]], b: Sequence[Sequence[Detection]], iou: float = 0.5
) -> float:
    """Mean per-frame agreement. A frame only one side has counts against the empty list."""
    if not a and not b:
        return 1.0
    scores = [detection_agreement(fa, fb, iou) for fa, fb in zip_longest(a, b, fillvalue=())]
    return sum(scores) / len(scores)


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance over the reference length; can exceed 1 when the hypothesis is longer."""
    return levenshtein(reference, hypothesis) / max(len(reference), 1)


def reading_order(lines: Sequence[TextLine]) -> list[TextLine]:
    """Top-to-bottom rows, left-to-right inside a row.

    A plain sort on y1 would flip two words of one row whose tops differ by a pixel, and the two
    models' boxes jitter by that much; so a line joins the current row when its vertical centre
    falls inside the row's first box.
    """
    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda t: (t.box[1] + t.box[3]) / 2):
        centre = (line.box[1] + line.box[3]) / 2
        if rows and rows[-1][0].box[1] <= centre <= rows[-1][0].box[3]:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda t: t.box[0])]


def ocr_agreement(a: Sequence[TextLine], b: Sequence[TextLine]) -> float:
    """1 - CER of the texts joined in reading order with newlines, clipped to [0, 1]."""
    if not a and not b:
        return 1.0
    ref = "\n".join(t.text for t in reading_order(a))
    hyp = "\n".join(t.text for t in reading_order(b))
    return min(1.0, max(0.0, 1.0 - character_error_rate(ref, hyp)))


def action_agreement(a: Sequence[TrackAction], b: Sequence[TrackAction]) -> float:
    """Share of track ids (of either side) given the same label; a track only one side
    classified counts as a disagreement. The models' labels are compared, not the outcomes:
    a label below the pipeline's ``uncertain_below`` still says what the model thought."""
    la = {x.track_id: x.prediction.label for x in a}
    lb = {x.track_id: x.prediction.label for x in b}
    tracks = la.keys() | lb.keys()
    if not tracks:
        return 1.0
    return sum(1 for t in tracks if t in la and t in lb and la[t] == lb[t]) / len(tracks)


_BY_KIND: dict[str, Callable[[Any, Any], float]] = {
    "detections": detection_agreement,
    "frame_detections": frame_detection_agreement,
    "text": ocr_agreement,
    "actions": action_agreement,
}


def agreement(kind: str, a: Any, b: Any) -> float:
    """Agreement of two outputs of an op whose output kind is ``kind`` (see serving/ops.py)."""
    fn = _BY_KIND.get(kind)
    if fn is None:
        raise ValueError(
            f"no agreement measure for output kind {kind!r}; known: {sorted(_BY_KIND)}"
        )
    return float(fn(a, b))
