"""Benchmark inputs made from real photos (the ``skimage`` wheel): a street-size JPEG and a clip.

No photo or clip of a street ships in a wheel, so both are real-derived, the way the detection
set is (:mod:`model_registry.evaluation.detection_set`): real people cut out of real photos on
real backgrounds.

* :func:`street_photo`: 810x1080 (portrait, like a phone photo), JPEG quality 90, six people
  from 100 to 400 px tall: two scenes of the set stacked and scaled by 1.125.
* :func:`street_clip`: 10 s at 25 fps, 640x272, MPEG-4 Part 2 in MP4: two people walking
  across the rocket photo in opposite directions, one of them crouching half-way, with sensor
  noise on every frame (so no two frames encode alike).
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from model_registry.evaluation.detection_set import detection_set, photo, sprite

PHOTO_SIZE = (810, 1080)
CLIP_SIZE = (640, 272)
CLIP_FPS = 25.0
CLIP_SECONDS = 10.0


@functools.cache
def street_photo(quality: int = 90) -> bytes:
    """The 810x1080 JPEG (bytes)."""
    items = {i.name: i.image for i in detection_set().items}
    w, h = PHOTO_SIZE
    half = [
        cv2.resize(items[name], (720, 540), interpolation=cv2.INTER_LINEAR)
        for name in ("crowd-mixed", "overlap-astronaut-camera")
    ]
    canvas = cv2.copyMakeBorder(np.vstack(half), 0, 0, 45, 45, cv2.BORDER_REFLECT)
    assert canvas.shape[:2] == (h, w), canvas.shape
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return buf.tobytes()


def clip_frames(
    seconds: float = CLIP_SECONDS, fps: float = CLIP_FPS, size: tuple[int, int] = CLIP_SIZE
) -> list[np.ndarray]:
    """RGB frames of the clip (deterministic: the noise is seeded)."""
    w, h = size
    bg = photo("rocket")
    s = max(w / bg.shape[1], h / bg.shape[0])
    bg = cv2.resize(bg, (round(bg.shape[1] * s), round(bg.shape[0] * s)))
    y0, x0 = (bg.shape[0] - h) // 2, (bg.shape[1] - w) // 2
    background = bg[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    walkers = [
        (sprite("astronaut", "cutout", (150, 210)), -40.0, 1.0),
        (sprite("camera", "cutout", (140, 230), flip=True), float(w - 100), -1.0),
    ]
    rng = np.random.default_rng(7)
    n = round(seconds * fps)
    frames = []
    for i in range(n):
        t = i / max(1, n - 1)
        canvas = background.copy()
        for k, ((rgb, alpha), start, direction) in enumerate(walkers):
            x = round(start + direction * t * (w - 60))
            ph = rgb.shape[0]
            if k == 0 and 0.45 < t < 0.6:  # the first walker crouches for a moment
                ph = round(ph * 0.7)
                rgb_k = cv2.resize(rgb, (rgb.shape[1], ph))
                alpha_k = cv2.resize(alpha, (alpha.shape[1], ph))
            else:
                rgb_k, alpha_k = rgb, alpha
            _blend(canvas, rgb_k, alpha_k, x, h - ph - 4)
        noisy = canvas + rng.normal(0.0, 3.0, canvas.shape).astype(np.float32)
        frames.append(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
    return frames


def _blend(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    h, w = canvas.shape[:2]
    sh, sw = alpha.shape
    cx1, cy1, cx2, cy2 = max(x, 0), max(y, 0), min(x + sw, w), min(y + sh, h)
    if cx1 >= cx2 or cy1 >= cy2:
        return
    sl = np.s_[cy1 - y : cy2 - y, cx1 - x : cx2 - x]
    a = alpha[sl][:, :, None]
    canvas[cy1:cy2, cx1:cx2] = a * rgb[sl] + (1 - a) * canvas[cy1:cy2, cx1:cx2]


def street_clip(path: Path) -> bytes:
    """Write the clip to ``path`` (an .mp4) and return its bytes."""
    frames = clip_frames()
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), CLIP_FPS, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return Path(path).read_bytes()
