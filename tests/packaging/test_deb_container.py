"""The .deb end to end: installed into a fresh Debian 12 root, booted with systemd-nspawn, and
used the way an administrator would; then upgraded and purged.

Run by `make test-packages`, which builds the packages first; marked
`packages` so that a plain `pytest` leaves these slow tests out. One booted container is shared
by the tests of this module, in order: install → first boot → model → chat → doctor → upgrade →
purge.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import __version__
from appliance.store.embedded import embedded_model_path
from helpers.container import Container, boot, installed_root, why_not_bootable

pytestmark = pytest.mark.packages

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = Path(os.environ.get("AI_APPLIANCE_PACKAGES", ROOT / "dist"))
DEB = PACKAGES / f"ai-appliance_{__version__}_amd64.deb"
REPORT = Path(os.environ.get("AI_APPLIANCE_E2E_REPORT", ROOT / "dist" / "e2e-report"))


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    reason = why_not_bootable({DEB: "make package"})
    if reason:
        pytest.skip(reason)
    REPORT.mkdir(parents=True, exist_ok=True)
    work = tmp_path_factory.mktemp("nspawn")
    root = work / "root"
    installed_root(root, [DEB], embedded_model_path())
    handle = boot(root, "aiappliance-e2e", work / "console.log")
    try:
        handle.wait_booted()
        yield handle
    finally:
        # The container's journal, for the report and for whoever debugs a failure here.
        journal = handle.run("journalctl", "-b", "--no-pager", "-o", "short-iso", check=False)
        (REPORT / "journal.txt").write_text(journal.stdout)
        handle.stop()


def show(container: Container, *props: str) -> dict[str, str]:
    result = container.run("systemctl", "show", "ai-appliance", f"--property={','.join(props)}")
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def chat(container: Container, key: str) -> str:
    script = (
        "import json, sys, urllib.request\n"
        "body = json.dumps({'model': 'smollm2', 'max_tokens': 16,"
        " 'messages': [{'role': 'user', 'content': 'Say hello.'}]}).encode()\n"
        "req = urllib.request.Request('http://127.0.0.1:8080/v1/chat/completions', body,"
        " {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + sys.argv[1]})\n"
        "print(json.load(urllib.request.urlopen(req, timeout=120))"
        "['choices'][0]['message']['content'])\n"
    )
    python = "/usr/lib/ai-appliance/venv/bin/python"
    return container.run(python, "-c", script, key).stdout.strip()


def test_first_boot_runs_once_and_leaves_an_admin_key_for_root_only(container: Container) -> None:
    report = json.loads(container.run("cat", "/var/lib/ai-appliance/firstboot.json").stdout)
    assert report["cpu_variant"], "first boot ran the CPU variant self-test"
    assert report["devices"][0]["id"] == "cpu0"
    mode = container.run("stat", "-c", "%a %U", "/var/lib/ai-appliance/first-admin-key").stdout
    assert mode.split() == ["600", "ai-appliance"]
    firstboot = container.run(
        "systemctl", "show", "ai-appliance-firstboot", "--property=Result,ActiveState"
    ).stdout
    assert "Result=success" in firstboot


def test_service_is_active_with_its_status_text_and_a_fed_watchdog(container: Container) -> None:
    values = show(container, "ActiveState", "StatusText", "WatchdogTimestamp", "Type")
    assert values["ActiveState"] == "active", values
    assert values["Type"] == "notify"
    assert "no model installed" in values["StatusText"], values
    assert values["WatchdogTimestamp"], "the daemon feeds the watchdog"
    socket = container.run("stat", "-c", "%a %G", "/run/ai-appliance/admin.sock").stdout.split()
    assert socket == ["660", "appliance-admin"]


def test_an_imported_model_answers_a_chat_after_a_restart(container: Container) -> None:
    container.run("appliance", "models", "import", "/srv/smollm2.gguf", "--name", "smollm2")
    # Type=notify: `restart` returns once the daemon said READY=1, i.e. the model answers.
    container.run("systemctl", "restart", "ai-appliance")
    values = show(container, "ActiveState", "StatusText")
    assert values["ActiveState"] == "active"
    assert values["StatusText"].startswith("serving smollm2 on cpu0"), values
    key = container.run("cat", "/var/lib/ai-appliance/first-admin-key").stdout.strip()
    assert chat(container, key)


def test_doctor_passes_inside_the_booted_container(container: Container) -> None:
    result = container.run("appliance", "doctor", check=False)
    (REPORT / "doctor.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert "OK   answer" in result.stdout and "OK   service" in result.stdout
    bundle = container.run("appliance", "doctor", "--bundle", "/root/bundle.tar.gz", check=False)
    assert bundle.returncode == 0, bundle.stderr
    key = container.run("cat", "/var/lib/ai-appliance/first-admin-key").stdout.strip()
    listing = container.run("sh", "-c", "tar -xzOf /root/bundle.tar.gz").stdout
    assert key not in listing, "the support bundle must not carry API keys"
    security = container.run("systemd-analyze", "security", "ai-appliance.service", check=False)
    (REPORT / "security.txt").write_text(security.stdout)
    assert "Overall exposure level" in security.stdout


def test_upgrade_keeps_the_model_the_key_and_a_changed_config(
    container: Container, tmp_path: Path
) -> None:
    # The same files as a newer version: what dpkg does on upgrade (prerm upgrade, new files,
    # postinst configure OLD, conffile kept) does not depend on the contents.
    newer = f"{__version__}+e2e1"
    tree = tmp_path / "deb"
    subprocess.run(["dpkg-deb", "-R", str(DEB), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    control.write_text(control.read_text().replace(f"Version: {__version__}\n",
                                                   f"Version: {newer}\n"))  # fmt: skip
    upgraded = tmp_path / f"ai-appliance_{newer}_amd64.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--root-owner-group", "-b", str(tree), str(upgraded)],
                   check=True, capture_output=True)  # fmt: skip
    shutil.copy(upgraded, container.root / "root" / upgraded.name)
    # A local change to the conffile (top-level keys go before the first [section]).
    container.run("sed", "-i", '1i default_model = "smollm2"', "/etc/ai-appliance/config.toml")
    key = container.run("cat", "/var/lib/ai-appliance/first-admin-key").stdout.strip()

    result = container.run("dpkg", "-i", f"/root/{upgraded.name}", input="")
    assert "config.toml" not in result.stdout + result.stderr, "no conffile question"
    # postinst restarted the service; `start` waits for that job (Type=notify: until READY=1).
    container.run("systemctl", "start", "ai-appliance")
    assert container.run("dpkg-query", "-W", "-f=${Version}", "ai-appliance").stdout == newer
    assert (
        'default_model = "smollm2"' in container.run("cat", "/etc/ai-appliance/config.toml").stdout
    )
    values = show(container, "ActiveState", "StatusText")
    assert values["ActiveState"] == "active", values
    models = json.loads(container.run("appliance", "models", "list", "--json").stdout)
    assert [m["name"] for m in models] == ["smollm2"]
    assert chat(container, key), "the key from before the upgrade still works"


def test_purge_keeps_the_state_unless_asked(container: Container) -> None:
    container.run("dpkg", "--purge", "ai-appliance")
    assert container.run("test", "-e", "/usr/bin/appliance", check=False).returncode != 0
    assert container.run("test", "-e", "/etc/ai-appliance", check=False).returncode != 0
    kept = container.run("ls", "/var/lib/ai-appliance").stdout.split()
    assert "appliance.db" in kept and "models" in kept
