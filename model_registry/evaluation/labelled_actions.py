"""Offline accuracy of action versions on the hand-labelled tracks (the ``offline_accuracy``
rollout check's evidence).

Shadow agreement measures whether a challenger answers like the champion; when the challenger
is the *better* model, agreeing with the worse one is the wrong target. So a rollout can also
judge both versions on tracks whose labels a person gave
(:mod:`model_registry.references.action_labelled`): real-photo clips through the real detectors
and the serving tracker, labelled by eye. Each version sees every labelled track the way a
pipeline would hand it over: the detector's keypoints plus the layouts derivable from them
(BlazePose's four points from COCO's 17), so each picks the layout it consumes.

The score is balanced accuracy (mean recall over the labels present), so a version cannot win
by always saying the commonest label. A labelled action a version does not know counts as wrong
for it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from deployments.models.keypoints import LAYOUTS, can_derive, derive, layout_points
from deployments.types import Track
from model_registry.references.action_labelled import DATA_DIR, LabelledTrack, load_labelled
from model_registry.store import ModelStore

OFFLINE_ACCURACY = "offline_accuracy"  # the rollout check that judges this evidence


class VersionScore(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    balanced_accuracy: float = Field(ge=0, le=1)
    accuracy: float = Field(ge=0, le=1)
    per_label: dict[str, float] = Field(description="Recall of each labelled action.")
    mean_confidence: float = Field(ge=0, le=1)


class LabelledAccuracy(BaseModel):
    """Champion and challenger scored on the same labelled tracks (crosses to the controller)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracks: int = Field(ge=0, description="Labelled tracks scored.")
    champion: VersionScore
    challenger: VersionScore


def with_derived_layouts(track: Track) -> Track:
    """The track with every layout derivable from the keypoints its detections carry."""
    points = []
    for tp in track.points:
        det = tp.detection
        for source in LAYOUTS:
            if layout_points(det, source) is None:
                continue
            for target in LAYOUTS:
                if target != source and can_derive(source, target):
                    det = derive(det, source, target)
        points.append(replace(tp, detection=det))
    return replace(track, points=tuple(points))


def score_version(
    store: ModelStore, model: str, version: int, items: list[LabelledTrack]
) -> VersionScore:
    from deployments.loader import load_model
    from deployments.runtime import RuntimeSpec

    resolved = store.resolve(f"{model}/{version}")
    classifier = load_model(resolved.path, RuntimeSpec(device="cpu", intra_op_num_threads=1))
    preds = classifier.predict([with_derived_layouts(it.track) for it in items])
    truth = np.array([it.label for it in items])
    said = np.array([p.label for p in preds])
    per_label = {
        label: float(np.mean(said[truth == label] == label)) for label in sorted(set(truth))
    }
    return VersionScore(
        version=version,
        balanced_accuracy=float(np.mean(list(per_label.values()))) if per_label else 0.0,
        accuracy=float(np.mean(said == truth)) if len(items) else 0.0,
        per_label=per_label,
        mean_confidence=float(np.mean([p.confidence for p in preds])) if preds else 0.0,
    )


def labelled_accuracy(
    store: ModelStore, model: str, champion: int, challenger: int
) -> LabelledAccuracy:
    """Both versions on the committed labelled tracks (the controller calls this once per
    rollout and caches it: neither the versions nor the set change under a rollout)."""
    items = load_labelled(DATA_DIR)
    return LabelledAccuracy(
        tracks=len(items),
        champion=score_version(store, model, champion, items),
        challenger=score_version(store, model, challenger, items),
    )
