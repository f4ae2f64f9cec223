"""Which served version answers a request: the default (champion) unless the caller pins one.

The decision is made once per request and then holds for every node of the pipeline, so a
response never mixes versions of one model. (The canary router of a later issue plugs its
weighted/sticky choice in here.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.errors import InvalidInput, UnknownModel, VersionNotServed

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

    def choose(self, models: list[str], pins: dict[str, int]) -> dict[str, int]:
        for name in pins:
            if name not in self.served:
                raise UnknownModel(
                    f"pinned model {name!r} is not served; served: {sorted(self.served)}"
                )
        chosen: dict[str, int] = {}
        for model in models:
            if model not in self.served:
                raise UnknownModel(f"model {model!r} is not served; served: {sorted(self.served)}")
            version = pins.get(model, self.default[model])
            if version not in self.served[model]:
                raise VersionNotServed(
                    f"{model} version {version} has no deployment; served versions: "
                    f"{self.served[model]}"
                )
            chosen[model] = version
        return chosen


def versions_header(versions: dict[str, int]) -> str:
    return ",".join(f"{m}={v}" for m, v in sorted(versions.items()))
