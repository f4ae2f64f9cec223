"""The base of every document a person writes (config file, pipeline, rollout spec, params).

Frozen, and unknown fields refused: a misspelt key in YAML or JSON is an error that quotes
where it is, never a silently ignored setting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
