"""What the model page gathers about a version, without the browser: a large version is not
read on a view, and shows registration's own scan, file by file."""

from __future__ import annotations

import pytest

from mlplane.security import local_admin
from mlplane.ui.pages import _models_detail as detail
from tests.ui.conftest import Seeded


def test_a_large_version_shows_the_scan_made_at_registration(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = local_admin("root")
    v = seeded.svc.registry.get_version(me, f"{seeded.model}@1")
    stored = seeded.svc.registry.scan_report(me, v.ref)
    assert stored.findings and stored.verdict == v.scan_verdict == "safe"
    monkeypatch.setattr(detail, "AUTO_VERIFY_BYTES", 0)  # every version is "large" now
    checks = detail.check_files(seeded.svc, me, v, project="default", force=False)
    assert checks.state == "skipped" and checks.verdict == "safe"
    assert all(c.verified is None for c in checks.files)  # nothing was read
    shown = [f for c in checks.files for f in c.findings]
    assert sorted(shown, key=str) == sorted(stored.findings, key=str)  # each under its file
    forced = detail.check_files(seeded.svc, me, v, project="default", force=True)
    assert forced.state == "verified" and all(c.verified for c in forced.files)
