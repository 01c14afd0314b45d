"""What the Ascend host install looks like: device nodes, version files, CANN toolkit.

Imports only the standard library. Paths follow accelerators.md 1.3 and 1.4; the install root
is a parameter (`devices.ascend_home`) because non-root installs live under `$HOME/Ascend`.
Device nodes are read at their real `/dev` paths, so umockdev's preload can fake them in tests.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SHARED_NODES = ("davinci_manager", "devmm_svm", "hisi_hdc")
RUN_GROUP = "HwHiAiUser"  # the driver installer's default run user and group


@dataclass
class Versions:
    driver: str | None = None
    firmware: str | None = None
    cann: str | None = None
    firmware_range: tuple[str, str] | None = None
    """The driver's `compatible_version_fw=[low,high]`, when its version file says."""
    notes: list[str] = field(default_factory=list)


def node_problem(
    path: str, *, euid: int | None = None, groups: Iterable[int] | None = None
) -> str | None:
    """Why this process cannot open a device node, or None when it can (root always can).

    Decided from the node's owner, group and mode rather than by opening it: opening a davinci
    node has side effects in the driver, and `os.access` cannot be asked on behalf of a user.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return f"{path} is missing"
    except OSError as error:
        return f"{path} cannot be read: {error.strerror}"
    euid = os.geteuid() if euid is None else euid
    groups = {*os.getgroups(), os.getegid()} if groups is None else set(groups)
    if euid == 0:
        return None
    if info.st_uid == euid:
        ok = info.st_mode & stat.S_IRUSR and info.st_mode & stat.S_IWUSR
    elif info.st_gid in groups:
        ok = info.st_mode & stat.S_IRGRP and info.st_mode & stat.S_IWGRP
    else:
        ok = info.st_mode & stat.S_IROTH and info.st_mode & stat.S_IWOTH
    if ok:
        return None
    return f"permission denied on {path} (mode {stat.filemode(info.st_mode)}, gid {info.st_gid})"


def nodes_problem(
    physical_ids: Iterable[int], dev_root: str | Path = "/dev", **who: object
) -> str | None:
    """One actionable sentence about the shared and per-chip nodes, or None when all are fine."""
    names = [*SHARED_NODES, *(f"davinci{n}" for n in physical_ids)]
    paths = [str(Path(dev_root) / name) for name in names]
    problems = [p for p in (node_problem(path, **who) for path in paths) if p]  # type: ignore[arg-type]
    if not problems:
        return None
    if all(problem.endswith("is missing") for problem in problems):
        missing = ", ".join(problem.removesuffix(" is missing") for problem in problems)
        return (
            f"the Ascend driver's device nodes are missing ({missing}): the driver is not "
            "loaded; install or reinstall the Ascend driver package (npu-driver) and reboot"
        )
    if any(problem.startswith("permission denied") for problem in problems):
        return (
            f"{problems[0]}: add the service user to the {RUN_GROUP} group "
            f"(`usermod -aG {RUN_GROUP} ai-appliance`) and restart the service"
        )
    return "; ".join(problems)


def read_versions(ascend_home: str | Path) -> Versions:
    home = Path(ascend_home)
    versions = Versions()
    driver = _key_values(home / "driver" / "version.info")
    # Older drivers have no package_version=, so Version= is the fallback (accelerators.md 1.4).
    versions.driver = driver.get("package_version") or driver.get("Version")
    firmware = _key_values(home / "firmware" / "version.info")
    versions.firmware = firmware.get("Version")
    window = re.fullmatch(r"\[([^,\]]+),([^\]]+)\]", driver.get("compatible_version_fw", ""))
    if window:
        versions.firmware_range = (window.group(1), window.group(2))
    versions.cann = _cann_version(home)
    return versions


def firmware_problem(versions: Versions) -> str | None:
    """The firmware is outside the window the driver's version file accepts."""
    if not versions.firmware or not versions.firmware_range:
        return None
    low, high = versions.firmware_range
    if _version_key(low) <= _version_key(versions.firmware) <= _version_key(high):
        return None
    return (
        f"firmware {versions.firmware} is outside what driver {versions.driver} accepts "
        f"({low} to {high}): install the firmware package that matches the driver"
    )


def _cann_version(home: Path) -> str | None:
    # CANN 8.5+ lives in cann/; older toolkits in ascend-toolkit/latest (often a link to it).
    for root in (home / "cann", home / "ascend-toolkit" / "latest"):
        for info in sorted(root.glob("*-linux/ascend_toolkit_install.info")):
            value = _key_values(info).get("version")
            if value:
                return value
        for name in ("version.info", "runtime/version.info", "share/info/runtime/version.info"):
            values = _key_values(root / name)
            if values.get("version_dir") or values.get("Version"):
                return values.get("version_dir") or values["Version"]
        running = _key_values(root / "version.cfg").get("runtime_running_version", "")
        match = re.search(r":([^\]]+)\]", running)
        if match:
            return match.group(1)
    return None


def _key_values(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines())
    return {key.strip(): value.strip() for key, sep, value in pairs if sep and key.strip()}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))
