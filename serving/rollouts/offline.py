"""The ``offline_accuracy`` rollout check: is the challenger at least as right as the champion
on tracks a person labelled?

Label agreement (``shadow_agreement``) penalises a challenger for disagreeing with a worse
champion. This check judges both against the truth instead: the controller scores the two
versions once per rollout on the committed labelled tracks
(:func:`model_registry.evaluation.labelled_actions.labelled_accuracy`) and puts the result in
``WindowStats.extra["offline_accuracy"]``.

``threshold`` is the drop in balanced accuracy allowed: the check passes when the challenger's
is at least the champion's minus ``threshold`` (0: no worse). ``min_samples`` is the labelled
tracks needed (default 10); with fewer, or no evidence, it abstains.

Registered explicitly at app assembly (``serving.app.plugin_checks``), like every plug-in.
"""

from __future__ import annotations

from collections.abc import Callable

from model_registry.evaluation.labelled_actions import OFFLINE_ACCURACY, LabelledAccuracy
from model_registry.store import ModelStore
from serving.rollouts.checks import PHASES, CheckResult, CheckSpec, WindowStats

# (registry, model, champion, challenger) -> both versions scored on the labelled tracks.
OfflineSource = Callable[[ModelStore, str, int, int], LabelledAccuracy | None]
DEFAULT_MIN_TRACKS = 10


class OfflineAccuracyCheck:
    name = OFFLINE_ACCURACY
    phases = PHASES

    def validate(self, spec: CheckSpec) -> None:
        if not 0.0 <= spec.threshold <= 1.0:
            raise ValueError(
                f"{self.name} threshold is the balanced-accuracy drop allowed, in [0, 1], "
                f"got {spec.threshold!r}"
            )

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        data = stats.extra.get(self.name)
        need = spec.min_samples or DEFAULT_MIN_TRACKS
        if not isinstance(data, LabelledAccuracy):
            return CheckResult(self.name, None, None, spec.threshold, "no labelled scores yet")
        if data.tracks < need:
            return CheckResult(
                self.name, None, None, spec.threshold, f"{data.tracks} of {need} labelled tracks"
            )
        champ, chall = data.champion, data.challenger
        # Rounded so that 0.75 - 0.80 is the -0.05 a threshold of 0.05 allows.
        delta = round(chall.balanced_accuracy - champ.balanced_accuracy, 9)
        return CheckResult(
            self.name,
            delta >= -spec.threshold,
            delta,
            spec.threshold,
            f"balanced accuracy on {data.tracks} labelled tracks: challenger v{chall.version} "
            f"{chall.balanced_accuracy:.3f}, champion v{champ.version} "
            f"{champ.balanced_accuracy:.3f}",
        )
