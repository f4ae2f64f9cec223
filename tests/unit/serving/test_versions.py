from __future__ import annotations

import pytest

from serving.errors import InvalidInput, UnknownModel, VersionNotServed
from serving.versions import VersionTable, parse_pins, versions_header


def test_parse_pins() -> None:
    assert parse_pins("detector=2, ocr=1") == {"detector": 2, "ocr": 1}
    assert parse_pins(None) == {} and parse_pins("") == {}


@pytest.mark.parametrize("bad", ["detector", "detector=two", "=2", "detector=-1"])
def test_bad_pins_are_quoted(bad: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_pins(bad)
    assert repr(bad.strip()) in e.value.message


def test_choose_defaults_and_pins() -> None:
    table = VersionTable(served={"detector": [1, 2], "ocr": [1]}, default={"detector": 1, "ocr": 1})
    assert table.choose(["detector", "ocr"], {}) == {"detector": 1, "ocr": 1}
    assert table.choose(["detector"], {"detector": 2}) == {"detector": 2}
    with pytest.raises(VersionNotServed, match=r"served versions: \[1\]"):
        table.choose(["ocr"], {"ocr": 5})
    with pytest.raises(UnknownModel):
        table.choose(["detector"], {"nope": 1})
    assert versions_header({"ocr": 1, "detector": 2}) == "detector=2,ocr=1"
