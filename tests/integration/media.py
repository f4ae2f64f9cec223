"""Test inputs made from real pictures (skimage wheels) and rendered text."""

from __future__ import annotations

import cv2
import numpy as np


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # RGB uint8, a real photo of a person


def encode(rgb: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def text_image(lines: list[str], width: int = 640) -> np.ndarray:
    img = np.full((60 + 70 * len(lines), width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(
            img, line, (30, 70 + 70 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 3, cv2.LINE_AA
        )
    return img


def person_clip(
    moving: bool,
    frames: int = 16,
    size: tuple[int, int] = (640, 360),
    person_height: int = 240,
    step: int = 18,
) -> list[np.ndarray]:
    """The astronaut photo pasted on a plain background, walking across or standing still."""
    w, h = size
    person = cv2.resize(astronaut(), (person_height, person_height), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(frames):
        canvas = np.full((h, w, 3), 128, np.uint8)
        x = 20 + (i * step if moving else 0)
        y = h - person_height - 10
        canvas[y : y + person_height, x : x + person_height] = person
        out.append(canvas)
    return out


def video_bytes(frames: list[np.ndarray], path, fps: float = 10.0) -> bytes:  # type: ignore[no-untyped-def]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()
