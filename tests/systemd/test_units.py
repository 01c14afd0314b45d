"""The systemd unit, drop-in, sysusers.d and tmpfiles.d files under `systemd/`.

Always: the files parse and carry the settings the box depends on, and agree with each other
and with the hook runner. Where the systemd tools exist, they check the files for real inside a
throwaway root that holds a stub `/usr/bin/appliance` (the package installs the real one; a
unit check must not depend on the package being installed on the test machine).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.firmware_hooks import HookEvent

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD_DIR / "ai-appliance.service"
ASCEND_DROP_IN = SYSTEMD_DIR / "ai-appliance.service.d" / "10-ascend.conf"
SYSUSERS = SYSTEMD_DIR / "ai-appliance.sysusers"
TMPFILES = SYSTEMD_DIR / "ai-appliance.tmpfiles"
FIRSTBOOT = SYSTEMD_DIR / "ai-appliance-firstboot.service"
UDEV_RULES = SYSTEMD_DIR / "60-ai-appliance.rules"
PRESET = SYSTEMD_DIR / "ai-appliance.preset"
RPC = SYSTEMD_DIR / "ai-appliance-rpc.service"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections to keys to every value given, in order (unit files repeat keys such as After=,
    which configparser rejects)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}:{number}: not KEY=VALUE: {raw!r}"
        assert not line.endswith("\\"), f"{path.name}:{number}: continuation lines not expected"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def config_lines(path: Path) -> list[list[str]]:
    """Whitespace-split lines of a sysusers.d/tmpfiles.d file, without comments.

    Good enough for our files: the only quoted field (the GECOS) is the fourth of five.
    """
    rows = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rows.append(line.split())
    return rows


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}= expected once, found {values}"
    return values[0]


def declared_groups() -> set[str]:
    groups = set()
    for row in config_lines(SYSUSERS):
        if row[0] in ("g", "u"):  # "u name -" also creates the group of that name
            groups.add(row[1])
    return groups


def test_service_runs_the_daemon_as_its_own_user_with_state_and_runtime_dirs() -> None:
    service = parse_unit(UNIT)["Service"]

    assert one(service, "Type") == "notify"
    # Only the daemon may report readiness, not its engine workers or hooks.
    assert one(service, "NotifyAccess") == "main"
    # Longer than engine.hang_timeout_s (120 s) plus a heartbeat: the daemon replaces a hung
    # worker itself before systemd would restart the whole daemon.
    assert one(service, "WatchdogSec") == "3min"
    assert one(service, "ExecStart") == "/usr/bin/appliance serve"
    assert one(service, "User") == "ai-appliance"
    assert one(service, "Group") == "ai-appliance"
    assert one(service, "RuntimeDirectory") == "ai-appliance"
    assert one(service, "StateDirectory") == "ai-appliance"
    assert one(service, "ConfigurationDirectory") == "ai-appliance"
    assert one(service, "Restart") == "on-failure"
    assert "LimitMEMLOCK" not in service  # workers never mlock the weights
    assert parse_unit(UNIT)["Install"]["WantedBy"] == ["multi-user.target"]


def test_first_boot_unit_runs_once_before_the_daemon_as_the_daemon_user() -> None:
    unit = parse_unit(FIRSTBOOT)
    assert one(unit["Unit"], "Before") == "ai-appliance.service"
    # The report `appliance firstboot` writes last is the marker: a failed run is retried.
    assert one(unit["Unit"], "ConditionPathExists") == "!/var/lib/ai-appliance/firstboot.json"
    service = unit["Service"]
    assert (one(service, "Type"), one(service, "User")) == ("oneshot", "ai-appliance")
    assert one(service, "ExecStart") == "/usr/bin/appliance firstboot"


def test_udev_rules_give_the_service_group_every_accelerator_node() -> None:
    text = UDEV_RULES.read_text()
    for node in ("davinci[0-9]*", "davinci_manager", "devmm_svm", "hisi_hdc", "nvidia[0-9]*",
                 "nvidiactl", "nvidia-uvm"):  # fmt: skip
        assert node in text, node
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rules and all("setfacl -m g:ai-appliance:rw $devnode" in line for line in rules)
    assert "u ai-appliance" in SYSUSERS.read_text(), "the ACL names the daemon's own group"


def test_preset_enables_both_units_where_distributions_disable_new_services() -> None:
    lines = [ln for ln in PRESET.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines == ["enable ai-appliance.service", "enable ai-appliance-firstboot.service"]


def test_the_rpc_server_unit_is_off_by_default_and_runs_as_the_daemon_user() -> None:
    """It lends the box to unauthenticated peers: never enabled by the package or preset."""
    assert "ai-appliance-rpc" not in PRESET.read_text()
    service = parse_unit(RPC)["Service"]
    assert service["ExecStart"] == ["/usr/bin/appliance rpc-server"]
    assert (service["User"], service["Group"]) == (["ai-appliance"], ["ai-appliance"])
    assert service["RestartPreventExitStatus"] == ["2"], "a config error is not retried forever"
    assert "no authentication" in RPC.read_text().lower()
    rules = (SYSTEMD_DIR.parent / "packaging" / "debian" / "rules").read_text()
    assert "--no-enable --no-start ai-appliance-rpc.service" in rules


def test_admin_group_can_reach_the_socket_directory() -> None:
    service = parse_unit(UNIT)["Service"]
    # The directory's group is ai-appliance; appliance-admin members need "others" search
    # permission to reach admin.sock inside it.
    mode = int(one(service, "RuntimeDirectoryMode"), 8)
    assert mode & 0o001
    assert not mode & 0o004, "others should not be able to list /run/ai-appliance"
    assert "appliance-admin" in one(service, "SupplementaryGroups").split()


def test_hardening_does_not_hide_accelerator_devices() -> None:
    service = parse_unit(UNIT)["Service"]

    assert one(service, "NoNewPrivileges") == "yes"
    assert one(service, "ProtectSystem") == "strict"
    assert one(service, "ProtectHome") == "yes"
    assert one(service, "PrivateTmp") == "yes"
    for device_hiding in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "PrivateUsers"):
        assert device_hiding not in service
    # pyudev's hot-plug monitor needs netlink sockets.
    assert "AF_NETLINK" in one(service, "RestrictAddressFamilies").split()


def test_every_supplementary_group_is_declared_by_sysusers() -> None:
    # A SupplementaryGroups= entry naming a missing group fails every start with 216/GROUP.
    groups = one(parse_unit(UNIT)["Service"], "SupplementaryGroups").split()

    assert {"video", "render"} <= set(groups)
    assert set(groups) <= declared_groups()


def test_ascend_drop_in_adds_the_driver_group_only() -> None:
    drop_in = parse_unit(ASCEND_DROP_IN)

    assert drop_in == {"Service": {"SupplementaryGroups": ["HwHiAiUser"]}}
    assert "HwHiAiUser" not in declared_groups(), "the Ascend driver installer owns that group"


def test_sysusers_declares_the_daemon_user_and_the_admin_group() -> None:
    rows = config_lines(SYSUSERS)

    assert ["g", "appliance-admin", "-"] in rows
    users = [row for row in rows if row[0] == "u"]
    assert [row[1] for row in users] == ["ai-appliance"]
    assert users[0][-1] == "/var/lib/ai-appliance"


def test_tmpfiles_creates_a_folder_for_every_hook_event() -> None:
    folders = {row[1]: row for row in config_lines(TMPFILES) if row[0] == "d"}

    for event in HookEvent:
        row = folders[f"/etc/ai-appliance/hooks.d/{event}.d"]
        # Hooks run as the daemon: only root may add or change them.
        assert row[2:5] == ["0755", "root", "root"]
    assert folders["/var/lib/ai-appliance"][2:5] == ["0750", "ai-appliance", "ai-appliance"]
    state_mode = one(parse_unit(UNIT)["Service"], "StateDirectoryMode")
    assert folders["/var/lib/ai-appliance"][2] == state_mode
    assert "/run/ai-appliance" not in folders, "RuntimeDirectory= owns it"


# --- the real tools, in a throwaway root --------------------------------------------------


def host_unit_dir() -> Path:
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    pytest.skip("no systemd unit directory with sysinit.target on this machine")


def make_unit_root(tmp_path: Path, unit_text: str | None = None) -> Path:
    """A root with the host's standard units (verify resolves sysinit.target and friends),
    our unit and drop-in, and a stub for the binary the package will install."""
    root = tmp_path / "root"
    unit_dir = root / "usr/lib/systemd/system"
    shutil.copytree(host_unit_dir(), unit_dir, symlinks=True)
    shutil.copy(UNIT, unit_dir)
    shutil.copy(FIRSTBOOT, unit_dir)
    shutil.copy(RPC, unit_dir)
    if unit_text is not None:
        (unit_dir / UNIT.name).write_text(unit_text)
    shutil.copytree(ASCEND_DROP_IN.parent, unit_dir / ASCEND_DROP_IN.parent.name)
    stub = root / "usr/bin/appliance"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    (root / "etc").mkdir()
    return root


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "systemd-analyze",
            "verify",
            f"--root={root}",
            "ai-appliance.service",
            "ai-appliance-firstboot.service",
            "ai-appliance-rpc.service",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


@needs_analyze
def test_systemd_analyze_verify_finds_nothing_to_complain_about(tmp_path: Path) -> None:
    result = verify(make_unit_root(tmp_path))

    # verify exits 0 even for unknown keys or bad values, which it only prints.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    # The control: without it, an empty report could mean the unit was never read.
    broken = UNIT.read_text().replace("Type=notify", "Type=bogus")

    result = verify(make_unit_root(tmp_path, broken))

    assert "Failed to parse service type" in result.stdout + result.stderr


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
    reason="systemd-sysusers/systemd-tmpfiles not installed",
)
@pytest.mark.skipif(os.geteuid() != 0, reason="tmpfiles must chown to the new user (root only)")
def test_sysusers_and_tmpfiles_install_into_a_fresh_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for source, folder in ((SYSUSERS, "sysusers.d"), (TMPFILES, "tmpfiles.d")):
        target = root / "usr/lib" / folder / "ai-appliance.conf"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)

    # The order the package's postinst uses: users first, since tmpfiles names them.
    for command in (
        ["systemd-sysusers", f"--root={root}", "ai-appliance.conf"],
        ["systemd-tmpfiles", f"--root={root}", "--create", "ai-appliance.conf"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr

    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").open()}
    groups = {line.split(":")[0] for line in (root / "etc/group").open()}
    assert passwd["ai-appliance"][5] == "/var/lib/ai-appliance"
    assert passwd["ai-appliance"][6].strip().endswith("nologin")
    assert {"ai-appliance", "appliance-admin", "video", "render"} <= groups
    uid = int(passwd["ai-appliance"][2])
    models = (root / "var/lib/ai-appliance/models").stat()
    assert (models.st_uid, oct(models.st_mode & 0o777)) == (uid, "0o750")
    for event in HookEvent:
        assert (root / f"etc/ai-appliance/hooks.d/{event}.d").is_dir()


# --- hardening score and out-of-memory order ---------------------------------------------------


def test_out_of_memory_kills_a_worker_before_the_daemon_and_keeps_the_service() -> None:
    service = parse_unit(UNIT)["Service"]

    daemon_score = int(one(service, "OOMScoreAdjust"))
    worker_score = Config().engine.worker_oom_score_adj
    assert daemon_score < 0 < worker_score
    # systemd's default (stop) would take the whole service down with one killed worker.
    assert one(service, "OOMPolicy") == "continue"
    assert one(service, "MemoryMax").endswith("%")


def test_hardening_keeps_what_placement_and_the_admin_socket_need() -> None:
    service = parse_unit(UNIT)["Service"]

    # /proc/meminfo and /proc/cpuinfo are read to place models: no ProcSubset=pid.
    assert "ProcSubset" not in service
    # chown gives the admin socket to appliance-admin: @privileged must stay allowed.
    refused = " ".join(v for v in service["SystemCallFilter"] if v.startswith("~"))
    assert "@privileged" not in refused and "@chown" not in refused
    assert one(service, "CapabilityBoundingSet") == ""


def exposure(unit: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def offline_security_available() -> bool:
    if shutil.which("systemd-analyze") is None:
        return False
    help_text = subprocess.run(
        ["systemd-analyze", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return "--offline" in help_text


needs_offline_security = pytest.mark.skipif(
    not offline_security_available(),
    reason="systemd-analyze without `security --offline` (systemd < 250)",
)


@needs_offline_security
def test_systemd_analyze_security_rates_the_unit_at_most_2_5(tmp_path: Path) -> None:
    unit = tmp_path / UNIT.name
    shutil.copy(UNIT, unit)

    assert exposure(unit) <= 2.5


@needs_offline_security
def test_systemd_analyze_security_would_catch_lost_hardening(tmp_path: Path) -> None:
    # The control: the same unit without its sandboxing lines must score far worse.
    kept = [
        line
        for line in UNIT.read_text().splitlines()
        if not line.startswith(("Protect", "Private", "Restrict", "SystemCall", "Capability"))
    ]
    unit = tmp_path / UNIT.name
    unit.write_text("\n".join(kept) + "\n")

    assert exposure(unit) > 5.0


@needs_offline_security
def test_the_rpc_server_unit_is_hardened_like_the_daemon(tmp_path: Path) -> None:
    # It serves an unauthenticated protocol: whatever reaches it must find little to touch.
    unit = tmp_path / RPC.name
    shutil.copy(RPC, unit)

    assert exposure(unit) <= 2.5
