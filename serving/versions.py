"""What is served at start-up (``VersionTable``) and the version pin header.

The per-request choice itself is the canary router's (serving/router.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class VersionTable:
    served: dict[str, list[int]]  # model -> versions with a live deployment
    default: dict[str, int]  # model -> version that answers when nothing is pinned
    aliases: dict[str, dict[str, int]] = field(default_factory=dict)


def versions_header(versions: dict[str, int]) -> str:
    return ",".join(f"{m}={v}" for m, v in sorted(versions.items()))
