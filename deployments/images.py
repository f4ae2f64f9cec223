"""An uploaded image that stays encoded until the process that needs its pixels decodes it.

The ingress checks the header (format, size) and ships the encoded bytes: 100-300 KB for a
phone photo, where its decoded RGB array would be 2-12 MB through Ray's object store. Each
consumer decodes it at the resolution it will use:

* a detector letterboxing to 640 px decodes a 4032x3024 JPEG at 1/4 in the DCT domain
  (``cv2.IMREAD_REDUCED_COLOR_4``), never below the size it letterboxes to;
* drift features (256 px) and the drift embedding (224 px) decode a small copy;
* OCR, which reads small print, decodes at full size.

Only JPEG has a reduced decode (the IDCT computes 1/2, 1/4, 1/8 scale directly); every other
format decodes at full size. EXIF orientation is ignored everywhere, as the full decode always
did, so boxes are in the pixel grid of the stored image.
"""

from __future__ import annotations

import cv2
import numpy as np

from serving.errors import UndecodableImage

SMALL_SIDE = 256
JPEG_MAGIC = b"\xff\xd8\xff"
# IMREAD_REDUCED_COLOR_{2,4,8}, IGNORE_ORIENTATION so the grid matches the full decode's.
_REDUCED = {
    1: cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION,
    2: cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION,
    4: cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION,
    8: cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION,
}


def decoder_env(max_pixels: int) -> dict[str, str]:
    """The environment of a process that decodes uploads (each replica's ``runtime_env``, the
    ingress's): OpenCV's own pixel ceiling, read when it first decodes, so an image whose
    header lied, or that reached a replica some other way, cannot make it allocate more."""
    return {"OPENCV_IO_MAX_IMAGE_PIXELS": str(max_pixels)}


class EncodedImage:
    """Encoded bytes plus the size read from their header (the original's pixels)."""

    __slots__ = ("_small", "data", "height", "width")

    def __init__(self, data: bytes, width: int, height: int) -> None:
        self.data = data
        self.width = int(width)
        self.height = int(height)
        self._small: np.ndarray | None = None

    # Pickled across Ray without the cached small copy.
    def __getstate__(self) -> tuple[bytes, int, int]:
        return (self.data, self.width, self.height)

    def __setstate__(self, state: tuple[bytes, int, int]) -> None:
        self.data, self.width, self.height = state
        self._small = None

    def __repr__(self) -> str:
        return f"EncodedImage({self.width}x{self.height}, {len(self.data)} bytes)"

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def is_jpeg(self) -> bool:
        return self.data[:3] == JPEG_MAGIC

    def factor(self, max_factor: float) -> int:
        """The DCT reduction (1, 2, 4 or 8) for a consumer that will scale the image down by
        ``1 / max_factor`` anyway: the largest that is not more than ``max_factor``."""
        if not self.is_jpeg:
            return 1
        return next((f for f in (8, 4, 2) if f <= max_factor), 1)

    def decode(self, max_factor: float = 1.0) -> np.ndarray:
        """RGB uint8 ``[H, W, 3]``, reduced by :meth:`factor` (``max_factor`` 1: full size)."""
        f = self.factor(max_factor)
        buf = np.frombuffer(self.data, np.uint8)
        try:
            arr = cv2.imdecode(buf, _REDUCED[f] if f > 1 else cv2.IMREAD_UNCHANGED)
        except cv2.error:  # past OPENCV_IO_MAX_IMAGE_PIXELS (decoder_env), or a codec assert
            arr = None
        if arr is None or arr.size == 0:
            raise UndecodableImage(
                f"could not decode the {len(self.data)}-byte upload as an image "
                "(JPEG, PNG, BMP, WebP, TIFF)"
            )
        return to_rgb(arr)

    def fit(self, width: int, height: int) -> np.ndarray:
        """Decoded for a consumer that fits it into ``width`` x ``height`` (a letterbox)."""
        return self.decode(1.0 / min(width / self.width, height / self.height, 1.0))

    def small(self) -> np.ndarray:
        """A copy whose shorter side is at least ``SMALL_SIDE`` (or the original, when smaller),
        for drift features (256 px longer side) and the drift embedding (224 px shorter side);
        decoded once per instance."""
        if self._small is None:
            self._small = self.decode(min(self.width, self.height) / SMALL_SIDE)
        return self._small


def to_rgb(arr: np.ndarray) -> np.ndarray:
    """A decoded OpenCV image (BGR, BGRA, grey, 16-bit ...) as RGB uint8."""
    if arr.dtype != np.uint8:
        arr = cv2.normalize(arr, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)  # type: ignore[call-overload]
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def reduce_pow2(image: np.ndarray, min_side: int = SMALL_SIDE) -> np.ndarray:
    """Area-average an array by the power of two (at most 8) that keeps its shorter side at
    least ``min_side``: what a reduced JPEG decode of the same image gives (within 1 % on the
    drift features). Consumers that downscale further (drift features, the embedding) apply it
    to every input, so a decoded array and an encoded upload give the same small copy."""
    h, w = image.shape[:2]
    f = next((f for f in (8, 4, 2) if f <= min(h, w) / min_side), 1)
    if f == 1:
        return image
    return cv2.resize(image, (-(-w // f), -(-h // f)), interpolation=cv2.INTER_AREA)


def image_size(image: np.ndarray | EncodedImage) -> tuple[int, int]:
    """(width, height) of the original image, in either form."""
    if isinstance(image, EncodedImage):
        return image.size
    return int(image.shape[1]), int(image.shape[0])


def as_array(image: np.ndarray | EncodedImage) -> np.ndarray:
    """Full-size pixels of either form (for consumers that need every pixel, like OCR)."""
    return image.decode() if isinstance(image, EncodedImage) else image
