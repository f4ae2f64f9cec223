"""A challenger must pair with what the pipelines serve: keypoint layouts at rollout start.

App assembly refuses a config whose served detector/action versions disagree on keypoints
(``serving.pipelines.spec.check_keypoint_layouts``). A rollout adds a version later, so the
controller runs the same check when one starts: the challenger against every other model's
champion, in every pipeline that uses its model. A refused start deploys nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from model_registry.mlflow_layout import TAG_LAYOUT
from model_registry.store import CHAMPION, ModelStore
from serving.errors import InvalidRolloutSpec
from serving.pipelines.executor import models_of
from serving.pipelines.spec import PipelineSpec, check_keypoint_layouts


def check_challenger_pairing(
    pipelines: Mapping[str, PipelineSpec], registry: ModelStore, model: str, challenger: int
) -> None:
    """Raise InvalidRolloutSpec when ``model`` v``challenger`` cannot pair with the champions."""
    for pname, pipe in pipelines.items():
        names = models_of(pipe)
        if model not in names:
            continue
        layouts: dict[str, dict[int, str | None]] = {}
        for name in names:
            version = challenger if name == model else registry.aliases(name).get(CHAMPION)
            if version is not None:
                layouts[name] = {version: registry.get(f"{name}/{version}").tags.get(TAG_LAYOUT)}
        try:
            check_keypoint_layouts(pname, pipe, layouts)
        except ValueError as e:
            raise InvalidRolloutSpec(str(e), model=model, version=challenger) from None
