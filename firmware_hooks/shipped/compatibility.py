"""`appliance-hook-compatibility` (boot, device-added, update): the installed runtimes against
the drivers and toolkits the accelerators have, by the matrix in compatibility.toml.

Devices come from the event payload (`devices` for boot, `device` for device-added); for other
events (update) it asks `appliance devices --json`. Runtimes installed: the llama.cpp builds
beside this Python and the onnxruntime distributions in it. Prints one line per check; exits 1
when a rule is broken, naming what to upgrade.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from appliance.drivers import ascend_host
from appliance.runtime.builds import DEFAULT_ROOT

MATRIX = Path(__file__).with_name("compatibility.toml")
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-cann")


def version_key(version: str) -> tuple[int, ...]:
    """`525.60.13` → (525, 60, 13); `8.0.RC2` → (8, 0, 2): good enough to compare releases."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def installed_runtimes(llama_root: Path = DEFAULT_ROOT) -> set[str]:
    found = {f"llama.cpp {path.parent.name}" for path in llama_root.glob("*/build-info.json")}
    for name in ORT_DISTRIBUTIONS:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.add(f"onnxruntime {name}")
    return found


def devices_from(payload: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(payload.get("devices"), list):
        return payload["devices"]
    if isinstance(payload.get("device"), dict):
        return [payload["device"]]
    result = subprocess.run(
        ["appliance", "devices", "--json"], capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"`appliance devices --json` failed: {result.stderr.strip()}")
    return json.loads(result.stdout)["devices"]


def check(
    devices: list[dict[str, Any]], runtimes: set[str], rules: list[dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """(lines that passed, problems) for every rule that applies to a device present."""
    passed: list[str] = []
    problems: list[str] = []
    for device in devices:
        kind, details = device.get("kind"), device.get("details") or {}
        for rule in rules:
            if rule["kind"] != kind or (
                rule["runtime"] != "any" and rule["runtime"] not in runtimes
            ):
                continue
            label = f"{device.get('id')}: {rule['runtime']}"
            problem = _broken(rule, details)
            if problem:
                problems.append(f"{label}: {problem}; {rule['why']} (source: {rule['source']})")
            else:
                passed.append(f"{label}: ok")
    return passed, problems


def _broken(rule: dict[str, Any], details: dict[str, Any]) -> str | None:
    for key, detail, what in (
        ("min_driver", "driver_version", "driver"),
        ("min_cuda_driver", "cuda_driver_version", "CUDA driver version"),
        ("min_cann", "cann_version", "CANN"),
    ):
        if key not in rule:
            continue
        have = details.get(detail)
        if not have:
            return f"{what} version unknown (needs {rule[key]} or later)"
        if version_key(str(have)) < version_key(rule[key]):
            return f"{what} {have} is older than the {rule[key]} it needs: upgrade the {what}"
    if rule.get("firmware_in_driver_range"):
        home = os.environ.get("APPLIANCE_DEVICES__ASCEND_HOME", "/usr/local/Ascend")
        return ascend_host.firmware_problem(ascend_host.read_versions(home))
    return None


def main() -> int:
    raw = sys.stdin.read() if not sys.stdin.isatty() else ""
    payload = json.loads(raw) if raw.strip() else {}
    rules = tomllib.loads(MATRIX.read_text())["rule"]
    try:
        devices = devices_from(payload)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as error:
        print(f"compatibility: cannot list the devices: {error}", file=sys.stderr)
        return 1
    passed, problems = check(devices, installed_runtimes(), rules)
    for line in passed:
        print(line)
    if not passed and not problems:
        print("no accelerator with a runtime that has version requirements")
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
