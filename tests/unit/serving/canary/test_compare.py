from __future__ import annotations

import pytest

from deployments.types import ActionPrediction, Detection, TextLine, TrackAction
from serving.canary.compare import (
    action_agreement,
    agreement,
    box_iou,
    character_error_rate,
    detection_agreement,
    frame_detection_agreement,
    ocr_agreement,
    reading_order,
)

PEOPLE = [
    Detection((0, 0, 10, 10), 0.9),
    Detection((20, 20, 40, 40), 0.8),
    Detection((50, 0, 60, 20), 0.7),
]


def shifted(d: Detection, dx: float) -> Detection:
    x1, y1, x2, y2 = d.box
    return Detection((x1 + dx, y1, x2 + dx, y2), d.score, d.label)


def line(text: str, x: float, y: float, w: float = 50, h: float = 10) -> TextLine:
    poly = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
    return TextLine(text, 0.9, poly, (x, y, x + w, y + h))


def act(label: str) -> ActionPrediction:
    return ActionPrediction(label, 0.9)


def test_box_iou() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_identical_detections_agree() -> None:
    assert detection_agreement(PEOPLE, PEOPLE) == 1.0
    assert detection_agreement(PEOPLE, list(reversed(PEOPLE))) == 1.0


def test_shifted_boxes_disagree() -> None:
    # Shifted by half a width: IoU 1/3 < 0.5 for every pair, so nothing matches.
    half = [shifted(d, (d.box[2] - d.box[0]) / 2) for d in PEOPLE]
    assert detection_agreement(PEOPLE, half) == 0.0
    # The same shift matches under a looser threshold.
    assert detection_agreement(PEOPLE, half, iou=0.3) == 1.0
    # A one-pixel jitter still matches.
    assert detection_agreement(PEOPLE, [shifted(d, 1) for d in PEOPLE]) == 1.0


def test_one_missing_detection_is_f1() -> None:
    # 2 matches, 3 + 2 detections: F1 = 2 * 2 / 5.
    assert detection_agreement(PEOPLE, PEOPLE[:2]) == pytest.approx(0.8)
    # One extra false detection on top of three matches: F1 = 2 * 3 / 7.
    extra = [*PEOPLE, Detection((100, 100, 120, 120), 0.3)]
    assert detection_agreement(PEOPLE, extra) == pytest.approx(6 / 7)


def test_empty_and_label_rules() -> None:
    assert detection_agreement([], []) == 1.0
    assert detection_agreement(PEOPLE, []) == 0.0 and detection_agreement([], PEOPLE) == 0.0
    car = Detection(PEOPLE[0].box, 0.9, label="car")
    assert detection_agreement([PEOPLE[0]], [car]) == 0.0


def test_matching_is_one_to_one() -> None:
    # Two challenger boxes over one champion box: only one may match; F1 = 2 * 1 / 3.
    twin = [PEOPLE[0], shifted(PEOPLE[0], 1)]
    assert detection_agreement([PEOPLE[0]], twin) == pytest.approx(2 / 3)


def test_frame_detection_agreement_is_mean_over_frames() -> None:
    a = [PEOPLE, PEOPLE, []]
    b = [PEOPLE, PEOPLE[:2], []]
    assert frame_detection_agreement(a, b) == pytest.approx((1.0 + 0.8 + 1.0) / 3)
    assert frame_detection_agreement([], []) == 1.0
    # A frame only one side returned counts against an empty frame.
    assert frame_detection_agreement([PEOPLE, PEOPLE], [PEOPLE]) == pytest.approx(0.5)


def test_character_error_rate() -> None:
    assert character_error_rate("RETURN 12345", "RETURN 1234S") == pytest.approx(1 / 12)
    assert character_error_rate("kitten", "sitting") == pytest.approx(3 / 6)
    assert character_error_rate("abc", "abc") == 0.0
    assert character_error_rate("", "") == 0.0
    assert character_error_rate("", "ab") == 2.0  # over max(len(reference), 1)
    assert character_error_rate("ab", "abcdef") == 2.0


def test_ocr_agreement_reads_in_order() -> None:
    page = [line("RETURN", 0, 0), line("12345", 60, 1), line("GATE 4", 0, 30)]
    # The challenger returns the same lines in another order, with jittered boxes.
    jumbled = [line("GATE 4", 1, 31), line("12345", 61, 0), line("RETURN", 0, 2)]
    assert [t.text for t in reading_order(jumbled)] == ["RETURN", "12345", "GATE 4"]
    assert ocr_agreement(page, jumbled) == 1.0
    misread = [line("RETURN", 0, 0), line("1234S", 60, 1), line("GATE 4", 0, 30)]
    # "RETURN\n12345\nGATE 4" is 19 characters; one substitution.
    assert ocr_agreement(page, misread) == pytest.approx(1 - 1 / 19)


def test_ocr_agreement_empty_and_clipped() -> None:
    assert ocr_agreement([], []) == 1.0
    assert ocr_agreement([line("AB", 0, 0)], []) == 0.0
    assert ocr_agreement([], [line("AB", 0, 0)]) == 0.0
    assert ocr_agreement([line("A", 0, 0)], [line("WXYZ", 0, 0)]) == 0.0  # CER 4 -> clipped


def test_action_agreement() -> None:
    a = [TrackAction(1, act("walk")), TrackAction(2, act("fall")), TrackAction(3, act("sit"))]
    b = [TrackAction(1, act("walk")), TrackAction(2, act("walk")), TrackAction(3, act("sit"))]
    assert action_agreement(a, b) == pytest.approx(2 / 3)
    assert action_agreement(a, a) == 1.0
    assert action_agreement([], []) == 1.0
    # Track 4 only on one side: 3 of the 4 tracks agree.
    assert action_agreement(a, [*a, TrackAction(4, act("run"))]) == pytest.approx(3 / 4)
    # An uncertain outcome still compares the model's label.
    assert action_agreement(a, [TrackAction(1, act("walk"), "uncertain"), *a[1:]]) == 1.0


def test_agreement_dispatches_on_kind() -> None:
    assert agreement("detections", PEOPLE, PEOPLE[:2]) == pytest.approx(0.8)
    assert agreement("frame_detections", [PEOPLE], [PEOPLE[:2]]) == pytest.approx(0.8)
    assert agreement("text", [line("ab", 0, 0)], [line("ab", 0, 0)]) == 1.0
    assert agreement("actions", [TrackAction(1, act("walk"))], [TrackAction(1, act("fall"))]) == 0.0
    with pytest.raises(ValueError, match="'image'"):
        agreement("image", [], [])
