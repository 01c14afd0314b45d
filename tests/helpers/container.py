"""A Debian 12 root built by mmdebstrap (cached as a tarball) and booted with systemd-nspawn.

Test helper for tests/packaging/test_deb_container.py. The host's PID 1 may not be systemd
(CI containers, VMs with their own init), so the container is not registered with machined
(`--register=no --keep-unit`) and commands run inside it through `nsenter` into its namespaces.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

SUITE = "bookworm"
MIRROR = os.environ.get("AI_APPLIANCE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What the package depends on, preinstalled so that `dpkg -i` needs no network.
PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "python3.11", "libgomp1", "acl", "procps"]
CACHE = (
    Path(os.environ.get("AI_APPLIANCE_BUILD_CACHE", Path.home() / ".cache" / "ai-appliance"))
    / "e2e"
)
TOOLS = ("mmdebstrap", "systemd-nspawn", "nsenter", "dpkg-deb")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def why_not_bootable(debs: dict[Path, str]) -> str | None:
    """Why the packages (each with the command that builds it) cannot be booted here, or None."""
    if missing_tools():
        return f"missing tools: {', '.join(missing_tools())} (make test-system-deps)"
    if os.geteuid() != 0:
        return "booting a container with systemd-nspawn needs root"
    for deb, how in debs.items():
        if not deb.exists():
            return f"{deb} is not built ({how})"
    return None


def root_tarball() -> Path:
    """The cached Debian root, built once per package list (mmdebstrap needs the mirror once)."""
    key = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)}".encode()).hexdigest()[:12]
    tarball = CACHE / f"debian-{SUITE}-{key}.tar"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             SUITE, str(partial), MIRROR],
            check=True, timeout=1800,
        )  # fmt: skip
        partial.replace(tarball)
    return tarball


@dataclass
class Container:
    root: Path
    process: subprocess.Popen[bytes]
    console: Path

    @property
    def leader(self) -> int:
        """PID (on the host) of the container's systemd."""
        for child in psutil.Process(self.process.pid).children(recursive=True):
            if child.name() == "systemd":
                return child.pid
        raise AssertionError(f"the container's systemd is not running; console:\n{self.log()}")

    def log(self) -> str:
        return self.console.read_text(errors="replace")[-5000:]

    def run(
        self, *argv: str, check: bool = True, timeout: float = 600, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the booted container as root, with a clean environment."""
        command = [
            "nsenter", "--target", str(self.leader), "--all", "--",
            "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root",
            "SYSTEMD_COLORS=0", "DEBIAN_FRONTEND=noninteractive", *argv,
        ]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def wait_booted(self, timeout_s: float = 300) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the container exited:\n{self.log()}")
            try:
                state = self.run("systemctl", "is-system-running", "--wait", check=False,
                                 timeout=timeout_s)  # fmt: skip
            except (AssertionError, subprocess.TimeoutExpired):
                time.sleep(1)
                continue
            return state.stdout.strip()
        raise AssertionError(f"the container did not finish booting:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGTERM makes nspawn ask the container's systemd for a clean poweroff.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def unpack(tarball: Path, root: Path) -> None:
    root.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(root), "-xf", str(tarball)], check=True)


def chroot_run(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command in the (not booted) root, e.g. dpkg -i before the first boot."""
    return subprocess.run(
        ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-D", str(root),
         "env", "DEBIAN_FRONTEND=noninteractive", *argv],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def boot(root: Path, name: str, console: Path) -> Container:
    process = subprocess.Popen(
        ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot",
         f"--machine={name}", "-D", str(root)],
        stdin=subprocess.DEVNULL, stdout=console.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    return Container(root, process, console)


def installed_root(root: Path, debs: list[Path], model: Path) -> None:
    """A fresh Debian root at `root` with `debs` installed before its first boot (as an
    appliance image is made) and `model` readable by the service at /srv/smollm2.gguf."""
    unpack(root_tarball(), root)
    for deb in debs:
        # /root, not /tmp: nspawn mounts a fresh tmpfs on the container's /tmp.
        shutil.copy(deb, root / "root" / deb.name)
    # /srv: readable by the service (its /tmp and /var/tmp are private, /home is hidden).
    shutil.copy(model, root / "srv" / "smollm2.gguf")
    (root / "srv" / "smollm2.gguf").chmod(0o644)
    installed = chroot_run(root, "dpkg", "-i", *(f"/root/{deb.name}" for deb in debs))
    assert installed.returncode == 0, installed.stdout + installed.stderr
