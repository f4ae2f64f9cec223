"""Champion drift alerts: which drifting reports raise one, and what an alert says.

Each report is designed for a false-alarm rate of at most ``drift.statistics.ALPHA`` (1 %) on
unchanged traffic. What keeps *repeated* reports from inflating that:

- scheduled reports judge disjoint windows: each takes only rows newer than the previous
  scheduled window (``DriftMonitor.run_scheduled``), so the schedule never looks at a row twice,
  and over 20 windows of unchanged traffic the expected number of alerts is at most 0.2 (two or
  more alerts: under 2 %);
- a drifting report alerts only when its window shares no row with the window that raised the
  version's last alert (:class:`AlertGate`): judging the same rows again, on demand or in an
  overlapping window, never raises a second alert; and alerts of one version are at least
  ``alert_cooldown_s`` apart.

Champion drift is reported, never rolled back; challengers are judged by their rollout.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("canaryserve.drift")


@dataclass(frozen=True)
class Window:
    """The capture times (epoch seconds) of the oldest and newest row a report judged."""

    oldest: float
    newest: float


@dataclass
class AlertGate:
    """Per (model, version): the window and time of the last alert."""

    cooldown_s: float
    _last: dict[tuple[str, str], tuple[Window, float]] = field(default_factory=dict)

    def admit(self, key: tuple[str, str], window: Window, now: float) -> bool:
        """Whether a drifting report over ``window`` may alert now; records it if so."""
        last = self._last.get(key)
        if last is not None:
            last_window, at = last
            if window.oldest <= last_window.newest or now - at < self.cooldown_s:
                return False
        self._last[key] = (window, now)
        return True


def champion_alert(report: dict[str, Any], now: float) -> dict[str, Any]:
    """The alert record (log, metric, webhook payload) for a drifting champion report."""
    verdict = report["verdict"]
    return {
        "kind": "champion_drift",
        "model": report["model"],
        "version": report["version"],
        "report_id": report["id"],
        "report_url": report["html_url"],
        "drift_share": verdict["drift_share"],
        "drifted_features": verdict["drifted_features"],
        "drifted_groups": verdict.get("drifted_groups", []),
        "created_at": now,
        "note": "champion drift is reported, never rolled back automatically",
    }


def redact_url(url: str) -> str:
    """``url`` fit for a log line: scheme and host only. A webhook URL's path, query or
    user-info is usually its secret (a chat service's hook token)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def _why(e: Exception) -> str:
    """What failed, without the exception's text: urllib quotes the URL in some of them."""
    code, reason = getattr(e, "code", None), getattr(e, "reason", None)
    if isinstance(code, int):
        return f"{type(e).__name__} {code}"
    if isinstance(reason, BaseException):
        return f"{type(e).__name__} ({type(reason).__name__})"
    return type(e).__name__


def post_webhook(url: str, payload: dict[str, Any], timeout_s: float = 5.0) -> None:
    """Deliver an alert without blocking the caller; failures are logged (the URL redacted),
    not raised."""

    def send() -> None:
        try:
            req = urllib.request.Request(
                url,
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                r.read()
        except Exception as e:
            log.warning("drift alert webhook %s failed: %s", redact_url(url), _why(e))

    threading.Thread(target=send, name="drift-webhook", daemon=True).start()
