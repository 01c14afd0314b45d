"""The daemon notices an upgrade (to fire the `update` hooks) by the version it last ran."""

from __future__ import annotations

from pathlib import Path

from appliance import __version__
from appliance.daemon import record_version


def test_first_start_records_the_version_and_reports_no_upgrade(tmp_path: Path) -> None:
    assert record_version(tmp_path) is None
    assert (tmp_path / "version").read_text().strip() == __version__
    assert record_version(tmp_path) is None


def test_a_different_previous_version_is_reported_once(tmp_path: Path) -> None:
    (tmp_path / "version").write_text("0.0.9\n")
    assert record_version(tmp_path) == "0.0.9"
    assert record_version(tmp_path) is None
