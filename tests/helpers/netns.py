"""Run a command in a fresh network namespace whose loopback carries multicast (or not).

mDNS needs an interface with multicast; the host's loopback usually has none, and the tests
must not announce anything on the real LAN. A private namespace gives each test its own
loopback: `ip link set lo multicast on` there touches nothing outside it. Root (CI) uses
`unshare --net`; anyone else gets a user namespace mapped to root first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def run_in_network_namespace(
    argv: list[str], *, multicast: bool, timeout_s: float = 240
) -> subprocess.CompletedProcess[str]:
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "-r", "--net"]
    setup = "ip link set lo up && ip link set lo multicast " + ("on" if multicast else "off")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    return subprocess.run(
        [*unshare, "sh", "-c", f'{setup} && exec "$@"', "netns", *argv],
        capture_output=True, text=True, timeout=timeout_s, env=env,
    )  # fmt: skip
