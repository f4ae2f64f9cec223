from __future__ import annotations

import pytest

from serving.canary.pins import parse_pins, versions_header
from serving.errors import InvalidInput


def test_parse_pins() -> None:
    assert parse_pins("detector=2, ocr=1") == {"detector": 2, "ocr": 1}
    assert parse_pins(None) == {} and parse_pins("") == {}


@pytest.mark.parametrize("bad", ["detector", "detector=two", "=2", "detector=-1"])
def test_bad_pins_are_quoted(bad: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_pins(bad)
    assert repr(bad.strip()) in e.value.message


def test_versions_header_is_sorted() -> None:
    assert versions_header({"ocr": 1, "detector": 2}) == "detector=2,ocr=1"


def test_empty_entries_are_skipped_and_the_rest_still_read() -> None:
    assert parse_pins("detector=2, ,,ocr=3") == {"detector": 2, "ocr": 3}


def test_an_entry_with_two_equals_signs_is_refused() -> None:
    with pytest.raises(InvalidInput, match="'detector=2=3' must look like 'model=version'"):
        parse_pins("detector=2=3")
