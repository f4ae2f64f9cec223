"""The articulated-skeleton track generator (action v2's training data)."""

from __future__ import annotations

import numpy as np
import pytest

from deployments.models.keypoints import COCO17
from model_registry.references.skeleton_motion import HARD, LABELS, J, skeleton
from model_registry.references.skeleton_tracks import generate_dataset, generate_track, noisy_labels

T = np.arange(30) / 10.0  # 3 s at 10 fps


def world(label: str, seed: int) -> np.ndarray:
    return skeleton(np.random.default_rng(seed), label, T)


def mean_y(w: np.ndarray, *names: str) -> np.ndarray:
    return w[:, [J[n] for n in names], 1].mean(axis=1)


def stats(label: str, seeds: range = range(30)) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {"hip": [], "wrist": [], "travel": [], "height": []}
    for seed in seeds:
        w = world(label, seed)
        ankles = mean_y(w, "left_ankle", "right_ankle")
        height = float(w[:, J["nose"], 1].max() - ankles.min())
        hips = w[:, [J["left_hip"], J["right_hip"]]].mean(axis=1)
        wrist_up = np.maximum(
            w[:, J["left_wrist"], 1] - w[:, J["left_shoulder"], 1],
            w[:, J["right_wrist"], 1] - w[:, J["right_shoulder"], 1],
        )
        out["hip"].append(float(((hips[:, 1] - ankles) / height).min()))
        out["wrist"].append(float(wrist_up.max() / height))
        out["travel"].append(float(np.linalg.norm(hips[-1, [0, 2]] - hips[0, [0, 2]]) / height))
        out["height"].append(height)
    return {k: np.array(v) for k, v in out.items()}


def test_generation_is_seeded() -> None:
    a = generate_track(np.random.default_rng(5), "walking")
    b = generate_track(np.random.default_rng(5), "walking")
    c = generate_track(np.random.default_rng(6), "walking")
    assert a == b and a != c
    d1, y1 = generate_dataset(2, per_class=4)
    d2, y2 = generate_dataset(2, per_class=4)
    assert d1 == d2 and (y1 == y2).all()


def test_tracks_look_like_yolo_pose_output() -> None:
    rng = np.random.default_rng(0)
    for label in LABELS:
        track = generate_track(rng, label)
        width, height = track.frame_size
        assert 5 <= track.fps <= 30 and 2 <= len(track.points) <= 64
        frames = [p.frame_index for p in track.points]
        assert frames == sorted(set(frames))
        for p in track.points:
            d = p.detection
            assert d.body_box is None
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            if d.keypoints:
                assert [k.name for k in d.keypoints] == list(COCO17)
                assert all(0 <= k.score <= 1 for k in d.keypoints)  # type: ignore[operator]
                assert all(0 <= k.x <= width and 0 <= k.y <= height for k in d.keypoints)
    plain = generate_track(rng, "standing", with_pose=False)
    assert all(not p.detection.keypoints for p in plain.points)


def test_people_are_sized_like_a_store_camera_sees_them() -> None:
    rng = np.random.default_rng(1)
    sizes = []
    for i in range(60):
        track = generate_track(rng, LABELS[i % len(LABELS)])
        boxes = np.array([p.detection.box for p in track.points])
        sizes.append(np.median(boxes[:, 3] - boxes[:, 1]))
    px = np.array(sizes)
    assert px.min() < 90 and np.median(px) > 80  # small people too, not only


def test_skeleton_is_a_plausible_person() -> None:
    w = world("standing", 0)
    assert w.shape == (len(T), 17, 3)
    height = w[0, J["nose"], 1] - mean_y(w, "left_ankle", "right_ankle")[0]
    assert 1.3 < height < 1.9
    assert (w[:, J["nose"], 1] > mean_y(w, "left_shoulder", "right_shoulder")).all()
    assert (mean_y(w, "left_shoulder", "right_shoulder") > mean_y(w, "left_hip", "right_hip")).all()
    assert (mean_y(w, "left_hip", "right_hip") > mean_y(w, "left_knee", "right_knee")).all()
    assert w[:, :, 1].min() > 0  # nothing below the floor


def test_each_label_moves_as_it_says() -> None:
    walk, stand, reach, crouch = (
        stats(x) for x in ("walking", "standing", "reaching", "crouching")
    )
    # Walkers translate; the others keep their feet roughly where they are.
    assert walk["travel"].min() > 0.3 and stand["travel"].max() < 0.02
    assert reach["travel"].max() < 0.02 and np.median(crouch["travel"]) < 0.15
    # Crouching drops the hips towards the ankles; standing and reaching do not.
    assert np.median(crouch["hip"]) < 0.4 and crouch["hip"].max() < 0.5
    assert stand["hip"].min() > 0.5 and reach["hip"].min() > 0.5
    # Reaching raises a wrist above its shoulder (chest-height shelves: nearly); standing never.
    assert np.mean(reach["wrist"] > 0) >= 0.5 and np.median(reach["wrist"]) > 0.1
    assert stand["wrist"].max() < 0 and crouch["wrist"].max() < 0.05


def test_other_is_none_of_the_four_motions() -> None:
    other = stats("other", range(40))
    assert other["travel"].max() < 0.2  # jumping, waving, turning, bending: no walk


def test_hard_conditions_are_noisier() -> None:
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    easy = [generate_track(rng_a, "standing") for _ in range(40)]
    hard = [generate_track(rng_b, "standing", conditions=HARD) for _ in range(40)]

    def low(tracks: list) -> float:  # type: ignore[type-arg]
        scores = [k.score for t in tracks for p in t.points for k in p.detection.keypoints]
        return float(np.mean(np.array(scores) < 0.3))

    assert low(hard) > low(easy)


def test_unknown_label_is_refused() -> None:
    with pytest.raises(ValueError, match="'dancing'"):
        generate_track(np.random.default_rng(0), "dancing")


def test_dataset_is_balanced_and_shuffled() -> None:
    tracks, y = generate_dataset(3, per_class=6)
    assert len(tracks) == 30 and np.bincount(y).tolist() == [6] * 5
    assert y.tolist() != sorted(y.tolist())


def test_noisy_labels() -> None:
    y = np.repeat(np.arange(5), 2000)
    noisy = noisy_labels(y, 0.05, seed=1)
    assert (noisy == noisy_labels(y, 0.05, seed=1)).all()
    assert np.mean(noisy != y) == pytest.approx(0.05, abs=0.01)
    assert set(np.unique(noisy)) == set(range(5))
    assert (noisy_labels(y, 0.0, seed=1) == y).all()
