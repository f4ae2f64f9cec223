"""The audit values: the config section and the hashes that keep raw sticky keys out."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from serving.audit import AuditSpec, node_entry, sha256_hex, sticky_key_hash


def test_sticky_key_hash_never_keeps_the_raw_key() -> None:
    digest = sticky_key_hash("10.0.0.7")
    assert digest == hashlib.sha256(b"10.0.0.7").hexdigest()[:16]
    assert sticky_key_hash(None) is None
    entry = node_entry(3, "challenger", 25.0, sticky_key="camera-42", pinned=False)
    assert entry["sticky_key_hash"] == sticky_key_hash("camera-42")
    assert "camera-42" not in repr(entry)
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_spec_defaults_and_bounds() -> None:
    spec = AuditSpec()
    assert (spec.enabled, spec.database_url, spec.retention_days) == (True, None, 30)
    assert (spec.batch_size, spec.flush_interval_s, spec.max_pending) == (200, 0.5, 10_000)
    with pytest.raises(ValidationError, match="retention_days"):
        AuditSpec(retention_days=0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        AuditSpec.model_validate({"retain_days": 3})
    with pytest.raises(ValidationError, match=r"batch_size \(50\) > max_pending \(10\)"):
        AuditSpec(batch_size=50, max_pending=10)


def test_a_node_entry_is_unpinned_unshadowed_and_no_fallback_unless_told() -> None:
    entry = node_entry(1, "champion", 0.0)
    assert (entry["pinned"], entry["shadowed"], entry["fallback"]) == (False, False, False)
    assert entry["sticky_key_hash"] is None
