"""Text-line orientation (cls) and recognition (rec) for the OCR model, with CTC decoding.

Every crop of every image in a request batch goes through the classifier and the recogniser in
as few ``session.run`` calls as possible: crops are resized to a fixed height, sorted by
aspect ratio, and each chunk of up to ``max_batch`` crops is padded to its widest member.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


def read_dict(path: Path) -> list[str]:
    """One character per line, in class order (class 0 is the CTC blank, not in the file).

    Only line endings are stripped: PP-OCR dicts contain whitespace characters (U+3000, the
    ideographic space, is the first entry of the v5 dict) that ``str.strip`` would erase.
    """
    lines = Path(path).read_bytes().decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def class_count(dict_size: int, use_space_char: bool) -> int:
    """Output classes of a PP-OCR CTC head: blank + dict (+ the space PaddleOCR appends)."""
    return dict_size + 1 + int(use_space_char)


@dataclass(frozen=True)
class Decoded:
    text: str
    confidence: float  # mean probability of the emitted characters; 0.0 when empty


class CtcDecoder:
    """Greedy CTC: best class per time step, merge repeats, drop blanks (class 0)."""

    def __init__(self, characters: Sequence[str], use_space_char: bool = True) -> None:
        self.characters = ["", *characters, *([" "] if use_space_char else [])]

    @property
    def num_classes(self) -> int:
        return len(self.characters)

    def decode(self, probs: np.ndarray, valid_steps: Sequence[int] | None = None) -> list[Decoded]:
        """``probs`` (N, T, C) softmax output; ``valid_steps[i]`` ignores the time steps of
        row ``i`` that only saw padding."""
        best = probs.argmax(axis=2)
        best_p = probs.max(axis=2)
        out = []
        for i in range(probs.shape[0]):
            steps = probs.shape[1] if valid_steps is None else int(valid_steps[i])
            idx, p = best[i, :steps], best_p[i, :steps]
            keep = idx != 0
            keep[1:] &= idx[1:] != idx[:-1]
            chars = [
                (self.characters[k] if k < len(self.characters) else "", float(q))
                for k, q in zip(idx[keep].tolist(), p[keep].tolist(), strict=True)
            ]
            # Leading/trailing spaces carry no information; keep them out of the confidence.
            while chars and not chars[0][0].strip():
                chars.pop(0)
            while chars and not chars[-1][0].strip():
                chars.pop()
            text = "".join(c for c, _ in chars)
            conf = float(np.mean([q for _, q in chars])) if chars else 0.0
            out.append(Decoded(text, conf))
        return out


def _resize_height(crop: np.ndarray, height: int, max_width: int) -> np.ndarray:
    h, w = crop.shape[:2]
    width = min(max_width, max(1, math.ceil(height * w / h)))
    return cv2.resize(crop, (width, height))


def _normalise(img: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((img.astype(np.float32) * (1.0 / 255.0) - mean) / std).transpose(2, 0, 1)


def chunks_by_width(crops: Sequence[np.ndarray], max_batch: int) -> list[list[int]]:
    """Indices sorted by aspect ratio, cut into chunks of ``max_batch`` (less padding)."""
    order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / crops[i].shape[0])
    return [order[k : k + max_batch] for k in range(0, len(order), max_batch)]


def rec_batch(
    crops: Sequence[np.ndarray],
    *,
    height: int,
    min_width: int,
    max_width: int,
    mean: np.ndarray,
    std: np.ndarray,
) -> tuple[np.ndarray, list[int]]:
    """(N, 3, height, W) batch padded on the right, and each crop's resized width."""
    resized = [_resize_height(c, height, max_width) for c in crops]
    width = max(min_width, *(r.shape[1] for r in resized))
    batch = np.zeros((len(crops), 3, height, width), dtype=np.float32)
    for k, r in enumerate(resized):
        batch[k, :, :, : r.shape[1]] = _normalise(r, mean, std)
    return batch, [r.shape[1] for r in resized]


def valid_steps(widths: Sequence[int], batch_width: int, steps: int) -> list[int]:
    """Time steps of the CTC output that overlap each crop's real pixels (plus one step of
    slack for the receptive field), so the padding cannot add characters."""
    return [min(steps, math.ceil(steps * w / batch_width) + 1) for w in widths]


def cls_batch(
    crops: Sequence[np.ndarray], *, height: int, width: int, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """(N, 3, height, width): crops resized to ``height``, squeezed to ``width`` if wider."""
    batch = np.zeros((len(crops), 3, height, width), dtype=np.float32)
    for k, crop in enumerate(crops):
        r = _resize_height(crop, height, width)
        batch[k, :, :, : r.shape[1]] = _normalise(r, mean, std)
    return batch
