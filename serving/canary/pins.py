"""The version pin header (``X-Model-Version: detector=2``) and the versions answer header.

A pin is a caller asking for one version of a model; the router honours or refuses it
(``serving.canary.split``).
"""

from __future__ import annotations

from serving.errors import InvalidInput

PIN_HEADER = "x-model-version"


def parse_pins(header: str | None) -> dict[str, int]:
    """``"detector=2, ocr=1"`` -> ``{"detector": 2, "ocr": 1}``."""
    pins: dict[str, int] = {}
    if not header:
        return pins
    for part in header.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, ver = part.partition("=")
        name, ver = name.strip(), ver.strip()
        if not sep or not name or not ver.isdigit():
            raise InvalidInput(
                f"X-Model-Version entry {part!r} must look like 'model=version' (e.g. detector=2)"
            )
        pins[name] = int(ver)
    return pins


def versions_header(versions: dict[str, int]) -> str:
    return ",".join(f"{m}={v}" for m, v in sorted(versions.items()))
