"""The .rpm by its contents, requirements and scriptlets. No RPM distribution's archive is
reachable from the build machines, so it cannot be booted as the .deb is; what it installs and
what its scriptlets run are checked instead (make test-packages)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance import __version__
from helpers.rpm import query_rpm

pytestmark = pytest.mark.packages

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = Path(os.environ.get("AI_APPLIANCE_PACKAGES", ROOT / "dist"))
RPM = PACKAGES / f"ai-appliance-{__version__}-1.x86_64.rpm"


def rpm_query(*args: str) -> str:
    return query_rpm(RPM, "make package", *args)


def test_rpm_carries_the_venv_units_and_a_noreplace_config() -> None:
    files = set(rpm_query("--list").split())
    for path in (
        "/usr/bin/appliance",
        "/usr/lib/ai-appliance/venv/bin/python",
        "/usr/lib/ai-appliance/venv/lib/ai-appliance/llama-runtime/cpu/libllama.so",
        "/usr/lib/systemd/system/ai-appliance.service",
        "/usr/lib/systemd/system/ai-appliance-firstboot.service",
        "/usr/lib/sysusers.d/ai-appliance.conf",
        "/usr/lib/tmpfiles.d/ai-appliance.conf",
        "/usr/lib/udev/rules.d/60-ai-appliance.rules",
        "/usr/lib/systemd/system-preset/90-ai-appliance.preset",
        "/etc/ai-appliance/hooks.d/boot.d/10-compatibility",
    ):
        assert path in files, path
    assert not any("/var/lib/ai-appliance" in f for f in files), "state is never in the package"
    assert rpm_query("--configfiles").split() == ["/etc/ai-appliance/config.toml"]
    flags = rpm_query("--queryformat", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]")
    assert "/etc/ai-appliance/config.toml cn" in flags  # %config(noreplace)


def test_rpm_requires_the_system_python_and_nothing_from_the_private_venv() -> None:
    requires = rpm_query("--requires")
    assert "/usr/bin/python3.11" in requires
    # Libraries inside the venv neither satisfy nor create dependencies of the system.
    assert "libonnxruntime" not in requires and "libllama" not in requires
    assert "libllama" not in rpm_query("--provides")


def test_rpm_scriptlets_create_users_start_on_install_restart_on_upgrade_keep_state() -> None:
    scripts = rpm_query("--scripts")
    post = scripts.split("postinstall scriptlet")[1].split("scriptlet")[0]
    assert "systemd-sysusers ai-appliance.conf" in post
    assert post.index("systemd-sysusers") < post.index("systemd-tmpfiles --create")
    assert "systemctl --no-reload preset" in post and "systemctl start ai-appliance" in post
    preun = scripts.split("preuninstall scriptlet")[1].split("scriptlet")[0]
    assert '"$1" -eq 0' in preun and "disable --now" in preun
    postun = scripts.split("postuninstall scriptlet")[1]
    assert "try-restart ai-appliance.service" in postun
    assert "/var/lib/ai-appliance" not in scripts.replace("# Erase: the cache goes; models, "
                                                          "keys and the database stay in "
                                                          "/var/lib/ai-appliance.", "")  # fmt: skip
    assert "pip" not in scripts.split()
