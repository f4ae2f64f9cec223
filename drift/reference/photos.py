"""Real photos for drift references: the photos that ship in the scikit-image wheel, augmented.

A drift reference should look like use: real camera photos, not generated frames. No photo
collection can be downloaded here, so the reference is built from the wheel's photos (a person
in a spacesuit, a cameraman, a coffee cup, a cat, a rocket on its pad, a motorcycle in a
garage), each drawn many times with the variation real uploads have. The platform's pipelines
look for people, so half the draws show one (:data:`CYCLE`).

- framing: a crop keeping 60-100 % of each side, so the subject moves and the aspect changes;
- size: the long side scaled to 320-960 px (phones downscale, webcams send 640 px);
- mirror: half the draws are flipped left-right;
- light: gain 0.8-1.2, gamma 0.85-1.15, offset +/-12 grey levels;
- focus: a quarter of the draws get a mild Gaussian blur (sigma 0.4-1.2).

Draws are seeded (``numpy.random.default_rng(seed)``): the same seed gives the same pixels, so a
reference is reproducible and traffic "like the reference" is another seed.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "motorcycle")
# Draw i shows PHOTOS[CYCLE[i % len(CYCLE)]]: a person in every other draw.
CYCLE = (0, 2, 1, 3, 0, 4, 1, 5)
CROP = (0.6, 1.0)
LONG_SIDE = (320, 960)
GAIN, GAMMA, OFFSET = (0.8, 1.2), (0.85, 1.15), 12.0
BLUR_SHARE, BLUR_SIGMA = 0.25, (0.4, 1.2)


@functools.cache
def wheel_photos() -> tuple[np.ndarray, ...]:
    """The photos of ``PHOTOS`` as RGB uint8 arrays (grey ones repeated to three channels)."""
    from skimage import data

    out = []
    for name in PHOTOS:
        image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(image[:, :, :3]))
    return tuple(out)


def augment(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    long_side: tuple[float, float] = LONG_SIDE,
    crop: tuple[float, float] = CROP,
) -> np.ndarray:
    """One draw of ``image``: crop, scale, mirror, light and focus jitter (see the module)."""
    h, w = image.shape[:2]
    ch, cw = int(h * rng.uniform(*crop)), int(w * rng.uniform(*crop))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = image[y : y + ch, x : x + cw]
    scale = rng.uniform(*long_side) / max(ch, cw)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(out, None, fx=scale, fy=scale, interpolation=interpolation)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    gain, gamma, offset = rng.uniform(*GAIN), rng.uniform(*GAMMA), rng.uniform(-OFFSET, OFFSET)
    light = 255.0 * (np.arange(256) / 255.0) ** gamma * gain + offset
    out = cv2.LUT(np.ascontiguousarray(out), np.clip(light, 0, 255).astype(np.uint8))
    if rng.random() < BLUR_SHARE:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*BLUR_SIGMA))
    return np.ascontiguousarray(out)


def photo_draws(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` augmented wheel photos, in the order of :data:`CYCLE`."""
    if n < 0:
        raise ValueError(f"n has value {n!r}. Expected at least 0.")
    rng = np.random.default_rng(seed)
    return [augment(photo(i), rng) for i in range(n)]


def photo(i: int) -> np.ndarray:
    """The wheel photo that draw ``i`` augments."""
    return wheel_photos()[CYCLE[i % len(CYCLE)]]
