"""OCR model: the real PP-OCRv4 (v1) and PP-OCRv5 (v2) reference models on rendered and real
images, plus the DB and CTC post-processing on hand-built maps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from deployments.loader import load_model
from deployments.models import ocr_det, ocr_rec
from deployments.models.ocr_model import OcrModel
from deployments.runtime import RuntimeSpec
from model_registry.manifest import Manifest
from model_registry.references.ocr import build_ocr_v1, build_ocr_v2
from serving.errors import InvalidInput, ManifestError, ModelValidationError

FONT = cv2.FONT_HERSHEY_SIMPLEX


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ocr-models")
    return {"v1": build_ocr_v1(root / "v1"), "v2": build_ocr_v2(root / "v2")}


@pytest.fixture(scope="module")
def models(model_dirs: dict[str, Path]) -> dict[str, OcrModel]:
    return {v: load_model(d) for v, d in model_dirs.items()}  # type: ignore[misc]


def render(size: tuple[int, int], items: list[tuple[str, tuple[int, int], float]]) -> np.ndarray:
    """White RGB image (h, w) with black text ``(text, (x, baseline_y), scale)``."""
    img = np.full((*size, 3), 255, dtype=np.uint8)
    for text, org, scale in items:
        cv2.putText(img, text, org, FONT, scale, (0, 0, 0), 2, cv2.LINE_AA)
    return img


def ink_box(size: tuple[int, int], item: tuple[str, tuple[int, int], float]) -> np.ndarray:
    """Bounding box (x1, y1, x2, y2) of the pixels one text item paints."""
    ys, xs = np.nonzero(render(size, [item])[:, :, 0] < 128)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=float)


def assert_box_around(box: tuple[float, ...], ink: np.ndarray, text: str) -> None:
    """The line box contains the text's ink, with a margin (DB grows boxes) of at most about
    one text height on each side."""
    b = np.array(box)
    margin = ink[3] - ink[1]
    assert (b[:2] <= ink[:2] + 2).all() and (b[2:] >= ink[2:] - 2).all(), (text, b, ink)
    assert (b[:2] >= ink[:2] - margin).all() and (b[2:] <= ink[2:] + margin).all(), (text, b, ink)


FORM_SIZE = (480, 640)
FORM = [
    ("SKU 99812", (40, 220), 1.2),  # listed out of order on purpose
    ("RMA 4471", (40, 100), 1.2),
    ("Ship to: Dock 7", (40, 360), 1.0),
    ("QTY 3", (360, 220), 1.2),
]
FORM_ORDER = ["RMA 4471", "SKU 99812", "QTY 3", "Ship to: Dock 7"]


# --- real models -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_reads_a_rendered_line_exactly(models: dict[str, OcrModel], version: str) -> None:
    item = ("RETURN 12345", (24, 56), 1.1)
    [lines] = models[version].predict([render((96, 400), [item])])
    assert [line.text for line in lines] == ["RETURN 12345"]
    assert 0.9 < lines[0].confidence <= 1.0
    assert_box_around(lines[0].box, ink_box((96, 400), item), "RETURN 12345")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_form_lines_come_in_reading_order_around_their_text(
    models: dict[str, OcrModel], version: str
) -> None:
    [lines] = models[version].predict([render(FORM_SIZE, FORM)])
    assert [line.text for line in lines] == FORM_ORDER
    by_text = {item[0]: item for item in FORM}
    for line in lines:
        box = np.array(line.box)
        assert_box_around(line.box, ink_box(FORM_SIZE, by_text[line.text]), line.text)
        # The polygon is in original pixels, clockwise from top-left, and spans the box.
        poly = np.array(line.polygon)
        assert poly.shape == (4, 2)
        assert poly[0, 0] < poly[1, 0] and poly[0, 1] < poly[3, 1]
        assert np.allclose([*poly.min(axis=0), *poly.max(axis=0)], box)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_reads_the_skimage_page(models: dict[str, OcrModel], version: str) -> None:
    page = skimage.data.page()  # grayscale scan of a printed paragraph
    [lines] = models[version].predict([page])
    assert len(lines) >= 4
    assert "segmentation" in lines[0].text.replace(" ", "").lower()
    assert any("markers" in line.text for line in lines)
    tops = [line.box[1] for line in lines]
    assert tops == sorted(tops)
    h, w = page.shape
    assert all(
        0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h for x1, y1, x2, y2 in (ln.box for ln in lines)
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_images_without_text_give_no_lines(models: dict[str, OcrModel], version: str) -> None:
    blank = np.full((480, 640, 3), 255, dtype=np.uint8)
    grey = np.full((200, 300, 3), 128, dtype=np.uint8)
    assert models[version].predict([blank, grey]) == [[], []]


def test_v1_and_v2_read_the_same_form_differently(models: dict[str, OcrModel]) -> None:
    form = render(FORM_SIZE, FORM)
    [a], [b] = models["v1"].predict([form]), models["v2"].predict([form])
    assert [ln.text for ln in a] == [ln.text for ln in b] == FORM_ORDER
    assert [ln.confidence for ln in a] != [ln.confidence for ln in b]
    assert [ln.box for ln in a] != [ln.box for ln in b]


def test_upside_down_line_is_turned_by_the_classifier(models: dict[str, OcrModel]) -> None:
    img = render((96, 400), [("RETURN 12345", (24, 56), 1.1)])
    [lines] = models["v2"].predict([np.ascontiguousarray(img[::-1, ::-1])])
    assert [line.text for line in lines] == ["RETURN 12345"]


def test_batch_equals_single_predictions_in_fewer_calls(models: dict[str, OcrModel]) -> None:
    model = models["v2"]
    images = [
        render(FORM_SIZE, FORM),
        render((96, 400), [("RETURN 12345", (24, 56), 1.1)]),
        np.full((100, 100, 3), 255, dtype=np.uint8),
    ]
    singles, single_calls = [], 0
    for img in images:
        before = model.ort_calls
        singles.append(model.predict([img]))
        single_calls += model.ort_calls - before
    before = model.ort_calls
    batched = model.predict(images)
    calls = model.ort_calls - before
    assert [[ln.text for ln in r] for r in batched] == [[ln.text for ln in s[0]] for s in singles]
    # CPU: one detector call per image, then the 5 crops of all images share cls and rec calls.
    assert model.runtime.provider == "CPUExecutionProvider"
    assert (single_calls, calls) == (3 + 3 + 1, 3 + 1 + 1)


def test_gpu_batch_limits_run_same_size_images_in_three_calls(
    model_dirs: dict[str, Path],
) -> None:
    model = load_model(model_dirs["v2"])
    assert isinstance(model, OcrModel)
    model.det_max_batch, model.rec_max_batch = 8, 64  # what a CUDA replica would use
    forms = [render(FORM_SIZE, FORM)] * 3
    result = model.predict(forms)
    assert model.ort_calls == 3  # det, cls, rec
    assert [[ln.text for ln in r] for r in result] == [FORM_ORDER] * 3


def test_example_input_is_read_back(models: dict[str, OcrModel]) -> None:
    model = models["v2"]
    [lines] = model.predict([model.example_input()])
    assert [ln.text for ln in lines] == ["CANARY 2048", "OCR SMOKE TEST"]


def test_refuses_non_image_inputs(models: dict[str, OcrModel]) -> None:
    with pytest.raises(InvalidInput, match="uint8"):
        models["v2"].predict([np.zeros((10, 10, 3), dtype=np.float32)])
    with pytest.raises(InvalidInput, match=r"\(10, 10, 2\)"):
        models["v2"].predict([np.zeros((10, 10, 2), dtype=np.uint8)])


# --- manifest / IO checks ----------------------------------------------------------------


def _variant(src: Path, dest: Path, **changes: object) -> Path:
    """A copy of model dir ``src`` (ONNX files linked) with manifest fields replaced."""
    dest.mkdir()
    manifest = Manifest.load(src)
    for rel in manifest.artifacts.values():
        if rel.endswith(".onnx"):
            (dest / rel).symlink_to(src / rel)
        else:
            (dest / rel).write_bytes((src / rel).read_bytes())
    manifest.model_copy(update=changes).dump(dest)
    return dest


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_check_io_accepts_the_reference_models(models: dict[str, OcrModel], version: str) -> None:
    models[version].check_io()


def test_check_io_refuses_a_dict_that_does_not_fit_the_rec_model(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    # v2's 18383-character dict next to v1's rec model (6625 classes).
    v1 = Manifest.load(model_dirs["v1"])
    d = _variant(model_dirs["v1"], tmp_path / "m")
    (d / v1.artifacts["dict"]).write_bytes((model_dirs["v2"] / "ppocrv5_dict.txt").read_bytes())
    model = load_model(d)
    with pytest.raises(ModelValidationError, match=r"18383 characters.*18385 classes.*6625"):
        model.check_io()


def test_check_io_refuses_wrong_cls_labels_and_rec_height(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    m = Manifest.load(model_dirs["v2"])
    d = _variant(
        model_dirs["v2"],
        tmp_path / "m",
        preprocess={**m.preprocess, "rec_height": 32},
        postprocess={**m.postprocess, "cls_labels": ["0", "90", "180"]},
    )
    with pytest.raises(ModelValidationError) as err:
        load_model(d).check_io()
    assert "rec input 'x' has 48 at axis 2" in err.value.message
    assert "cls output" in err.value.message and "expected 3" in err.value.message


def test_unknown_preprocess_key_is_refused(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    m = Manifest.load(model_dirs["v2"])
    d = _variant(model_dirs["v2"], tmp_path / "m", preprocess={**m.preprocess, "rec_hieght": 48})
    with pytest.raises(ManifestError, match="rec_hieght"):
        OcrModel(d, Manifest.load(d), RuntimeSpec())


# --- CTC decoding ------------------------------------------------------------------------


def _one_hot(indices: list[int], classes: int, p: float = 0.9) -> np.ndarray:
    probs = np.full((len(indices), classes), (1 - p) / (classes - 1), dtype=np.float32)
    probs[np.arange(len(indices)), indices] = p
    return probs


def test_ctc_merges_repeats_and_drops_blanks() -> None:
    decoder = ocr_rec.CtcDecoder(["A", "B", "C"], use_space_char=True)  # 0 blank .. 4 space
    assert decoder.num_classes == 5
    probs = _one_hot([0, 1, 1, 0, 1, 2, 2, 4, 3, 0], 5)
    probs[5, 2], probs[6, 2] = 0.6, 0.8  # the merged B keeps the first step's probability
    [d] = decoder.decode(probs[None])
    assert d.text == "AAB C"
    assert d.confidence == pytest.approx(np.mean([0.9, 0.9, 0.6, 0.9, 0.9]))


def test_ctc_trims_edge_spaces_and_ignores_padding_steps() -> None:
    decoder = ocr_rec.CtcDecoder(["A", "B"], use_space_char=True)  # 3 = space
    probs = np.stack([_one_hot([3, 1, 0, 3, 2, 3, 1], 4), _one_hot([0, 0, 0, 0, 0, 0, 0], 4)])
    full, empty = decoder.decode(probs)
    assert (full.text, empty.text, empty.confidence) == ("A B A", "", 0.0)
    [cut] = decoder.decode(probs[:1], valid_steps=[5])
    assert cut.text == "A B"


def test_ctc_without_space_char() -> None:
    decoder = ocr_rec.CtcDecoder(["x", "y"], use_space_char=False)
    [d] = decoder.decode(_one_hot([1, 2, 2, 0, 2], 3)[None])
    assert (decoder.num_classes, d.text) == (3, "xyy")


def test_read_dict_keeps_whitespace_characters(tmp_path: Path) -> None:
    path = tmp_path / "dict.txt"
    path.write_bytes("\u3000\r\na\n \nb\n".encode())
    assert ocr_rec.read_dict(path) == ["\u3000", "a", " ", "b"]


def test_valid_steps_cover_the_real_pixels_only() -> None:
    assert ocr_rec.valid_steps([320, 800, 80], batch_width=800, steps=100) == [41, 100, 11]


# --- DB post-processing ------------------------------------------------------------------


def test_db_keeps_confident_blobs_grown_by_the_unclip_distance() -> None:
    prob = np.zeros((64, 128), dtype=np.float32)
    prob[20:31, 10:71] = 0.9  # text kernel: 61 x 11 pixels
    prob[45:55, 80:120] = 0.4  # above thresh, below box_thresh: not text
    prob[5:7, 100:102] = 0.95  # 2 x 2 speck: below min_size
    found = ocr_det.db_boxes(
        prob, (128, 256), thresh=0.3, box_thresh=0.6, unclip_ratio=1.5, min_size=3
    )
    assert len(found) == 1
    quad, score = found[0]
    assert score == pytest.approx(0.9, abs=1e-3)
    # minAreaRect of the pixel centres is 60 x 10; distance = 600 * 1.5 / 140.
    d = 60 * 10 * 1.5 / 140
    expected = np.array([10 - d, 20 - d, 70 + d, 30 + d]) * 2  # map -> dest is 2x
    got = np.array([*quad.min(axis=0), *quad.max(axis=0)])
    assert np.allclose(got, expected, atol=2.0)
    assert np.array_equal(quad, ocr_det.order_points_clockwise(quad))


def test_db_finds_a_slanted_line_as_a_rotated_quad() -> None:
    prob = np.zeros((100, 200), dtype=np.float32)
    cv2.fillPoly(prob, [np.array([[20, 60], [170, 30], [172, 42], [22, 72]], np.int32)], 1.0)
    [(quad, _)] = ocr_det.db_boxes(prob, (100, 200), thresh=0.3, box_thresh=0.5, unclip_ratio=1.0)
    tl, tr, br, bl = quad
    assert tr[1] < tl[1] and br[1] < bl[1]  # rises to the right
    assert tl[0] < tr[0] and bl[0] < br[0]


def test_db_on_an_empty_map_finds_nothing() -> None:
    prob = np.full((32, 32), 0.1, dtype=np.float32)
    assert ocr_det.db_boxes(prob, (32, 32), thresh=0.3, box_thresh=0.5, unclip_ratio=1.6) == []


def test_unclip_grows_each_side_by_area_times_ratio_over_perimeter() -> None:
    (c, (w, h), angle) = ocr_det.unclip_rect(((50.0, 20.0), (40.0, 10.0), 5.0), 2.0)
    d = 40 * 10 * 2.0 / 100
    assert (c, w, h, angle) == ((50.0, 20.0), 40 + 2 * d, 10 + 2 * d, 5.0)


def _quad(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float32)


def test_reading_order_groups_rows_then_sorts_left_to_right() -> None:
    quads = [
        _quad(300, 105, 400, 135),  # row 2, right (slightly lower than its neighbour)
        _quad(10, 10, 200, 40),  # row 1
        _quad(10, 100, 200, 130),  # row 2, left
        _quad(10, 200, 90, 230),  # row 3
        _quad(250, 12, 300, 40),  # row 1, right
    ]
    assert ocr_det.reading_order(quads) == [1, 4, 2, 0, 3]
    assert ocr_det.reading_order([]) == []


def test_detector_input_size_rounds_to_32_and_respects_limits() -> None:
    assert ocr_det.resized_shape(480, 640, 960, "max", 2000) == (480, 640)
    assert ocr_det.resized_shape(1080, 1920, 960, "max", 2000) == (544, 960)
    assert ocr_det.resized_shape(480, 640, 736, "min", 2000) == (736, 992)
    assert ocr_det.resized_shape(96, 400, 736, "min", 2000) == (480, 2000 // 32 * 32)


def test_thin_strips_are_padded_with_their_background() -> None:
    strip = np.full((20, 400, 3), 200, dtype=np.uint8)
    strip[5:15, 10:100] = 0
    padded = ocr_det.pad_for_detection(strip, min_side=32, max_aspect=8.0)
    assert padded.shape == (50, 400, 3)
    assert np.array_equal(padded[:20], strip) and (padded[20:] == 200).all()


def test_unequal_images_are_batched_only_when_padding_is_cheap() -> None:
    shapes = [(480, 640), (480, 640), (1920, 1920), (448, 640)]
    assert ocr_det.group_for_batches(shapes, max_batch=8, max_waste=1.5) == [[2], [0, 1, 3]]
    assert ocr_det.group_for_batches(shapes, max_batch=2, max_waste=1.5) == [[2], [0, 1], [3]]
