"""TLS on the LAN API over real sockets: self-signed and administrator's files, SIGHUP reload,
the fingerprint in the banner and `appliance status`, and admin routes over TCP.

The daemons here have no model installed: TLS does not need one, and they start fast.
"""

from __future__ import annotations

import hashlib
import json
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance.tls import make_self_signed
from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon


def wait_up(daemon: Daemon) -> None:
    for _ in range(300):
        try:
            httpx.get(f"{daemon.root_url}/health", verify=False, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"daemon never answered:\n{daemon.log()}")


def trusting(cert: Path) -> ssl.SSLContext:
    """What a client does to trust a self-signed box: its certificate file as the one CA."""
    return ssl.create_default_context(cafile=str(cert))


def served_fingerprint(daemon: Daemon) -> str:
    """SHA-256 of the certificate a new TLS connection to the daemon is shown."""
    host, port = daemon.root_url.removeprefix("https://").split(":")
    pem = ssl.get_server_certificate((host, int(port)))
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def banner_fingerprint(daemon: Daemon) -> str:
    line = next(ln for ln in daemon.banner.splitlines() if ln.startswith("TLS: "))
    return line.rsplit(" ", 1)[1]


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path, wait_ready=False, APPLIANCE_TLS__MODE="self-signed")
    wait_up(daemon)
    yield daemon
    stop_daemon(daemon)


def test_self_signed_box_serves_https_that_clients_trust_by_its_certificate_file(
    self_signed: Daemon,
) -> None:
    assert self_signed.base_url.startswith("https://")
    cert = self_signed.home / "tls" / "self-signed.crt"
    assert oct((self_signed.home / "tls" / "self-signed.key").stat().st_mode & 0o777) == "0o600"
    headers = {"Authorization": f"Bearer {self_signed.api_key}"}
    # Trusting the one file is enough, by address and by name (the certificate names both).
    for root in (self_signed.root_url, self_signed.root_url.replace("127.0.0.1", "localhost")):
        models = httpx.get(f"{root}/v1/models", headers=headers, verify=trusting(cert))
        assert models.status_code == 200 and models.json()["object"] == "list"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{self_signed.root_url}/health")  # not trusted without it
    with pytest.raises(httpx.TransportError):
        httpx.get(self_signed.root_url.replace("https://", "http://") + "/health")


def test_the_fingerprint_in_the_banner_and_status_is_the_one_served(self_signed: Daemon) -> None:
    fingerprint = banner_fingerprint(self_signed)
    assert len(fingerprint.split(":")) == 32
    assert served_fingerprint(self_signed) == fingerprint
    status = json.loads(run_cli(self_signed.home, "status", "--json").stdout)
    assert status["tls_mode"] == "self-signed" and status["tls_fingerprint"] == fingerprint
    assert status["api_url"].startswith("https://")
    assert fingerprint in run_cli(self_signed.home, "status").stdout


def test_the_self_signed_certificate_is_kept_across_restarts(tmp_path: Path) -> None:
    first = start_daemon(tmp_path, wait_ready=False, APPLIANCE_TLS__MODE="self-signed")
    stop_daemon(first)
    again = start_daemon(tmp_path, wait_ready=False, APPLIANCE_TLS__MODE="self-signed")
    try:
        wait_up(again)
        assert banner_fingerprint(again) == banner_fingerprint(first)
        assert served_fingerprint(again) == banner_fingerprint(first)
    finally:
        stop_daemon(again)


def test_administrator_files_are_served_and_reread_on_sighup(tmp_path: Path) -> None:
    cert, key = tmp_path / "box.crt", tmp_path / "box.key"
    make_self_signed(cert, key)
    daemon = start_daemon(tmp_path, wait_ready=False, APPLIANCE_TLS__MODE="files",
                          APPLIANCE_TLS__CERT_FILE=str(cert),
                          APPLIANCE_TLS__KEY_FILE=str(key))  # fmt: skip
    try:
        wait_up(daemon)
        before = served_fingerprint(daemon)
        assert before == banner_fingerprint(daemon)
        make_self_signed(cert, key)  # the administrator renews the certificate
        daemon.process.send_signal(signal.SIGHUP)
        for _ in range(100):
            if served_fingerprint(daemon) != before:
                break
            time.sleep(0.1)
        renewed = served_fingerprint(daemon)
        assert renewed != before
        status = json.loads(run_cli(tmp_path, "status", "--json").stdout)
        assert status["tls_fingerprint"] == renewed
        # A broken file on SIGHUP: the box keeps serving the last good certificate.
        cert.write_text("not a certificate\n")
        daemon.process.send_signal(signal.SIGHUP)
        for _ in range(100):
            if "kept the old TLS certificate" in daemon.log():
                break
            time.sleep(0.1)
        assert "not a PEM certificate" in daemon.log()
        assert served_fingerprint(daemon) == renewed
    finally:
        stop_daemon(daemon)


def test_files_mode_without_files_is_refused_naming_the_settings(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "serve", check=False, APPLIANCE_TLS__MODE="files")
    assert result.returncode == 2
    assert "tls.cert_file" in result.stderr and "Traceback" not in result.stderr


def test_admin_routes_over_tls_need_an_admin_key_and_never_touch_server_paths(
    self_signed: Daemon,
) -> None:
    created = run_cli(self_signed.home, "keys", "create", "--scope", "admin", "--json",
                      "--name", "ops")  # fmt: skip
    admin = {"Authorization": f"Bearer {json.loads(created.stdout)['key']}"}
    user = {"Authorization": f"Bearer {self_signed.api_key}"}
    root = self_signed.root_url
    with httpx.Client(verify=trusting(self_signed.home / "tls" / "self-signed.crt")) as client:
        assert client.get(f"{root}/admin/status", headers=user).status_code == 403
        assert client.get(f"{root}/admin/status", headers=admin).status_code == 200
        assert client.get(f"{root}/admin/keys", headers=admin).status_code == 200
        refused = [
            client.get(f"{root}/admin/media", headers=admin),
            client.get(f"{root}/admin/media/files", params={"path": "/etc"}, headers=admin),
            client.post(f"{root}/admin/models/import", json={"path": "/etc/passwd"},
                        headers=admin),
            client.post(f"{root}/admin/models/x/export", json={"path": "/tmp/x"},
                        headers=admin),
        ]  # fmt: skip
    for answer in refused:
        assert answer.status_code == 403, answer.text
        assert "admin socket" in answer.json()["error"]["message"]
