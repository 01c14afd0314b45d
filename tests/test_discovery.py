"""LAN discovery: real daemons announce themselves over mDNS in a private network namespace,
and `appliance discover` finds them as someone on the LAN would."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from helpers.netns import run_in_network_namespace


def scenario(tmp_path: Path, *daemons: str, multicast: bool = True) -> dict:
    result = run_in_network_namespace(
        [sys.executable, "-m", "helpers.mdns_scenario", str(tmp_path), *daemons],
        multicast=multicast,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_discover_lists_each_box_with_its_url_tls_and_key_policy_and_goodbyes_clear_them(
    tmp_path: Path,
) -> None:
    report = scenario(
        tmp_path,
        "plain=APPLIANCE_DISCOVERY__NAME:Front desk box",
        "secure=APPLIANCE_DISCOVERY__NAME:Lab box,APPLIANCE_TLS__MODE:self-signed,"
        "APPLIANCE_API__REQUIRE_API_KEY:false",
    )
    boxes = {box["name"]: box for box in report["while_running"]}
    assert set(boxes) == {"Front desk box", "Lab box"}
    plain, secure = boxes["Front desk box"], boxes["Lab box"]
    port = report["status"]["plain"]["port"]
    assert plain["url"] == f"http://127.0.0.1:{port}/v1"
    assert (plain["tls"], plain["api_key_required"], plain["fingerprint"]) == (False, True, None)
    assert secure["url"] == f"https://127.0.0.1:{report['status']['secure']['port']}/v1"
    assert secure["tls"] is True and secure["api_key_required"] is False
    # The fingerprint a client can pin is the one the daemon itself reports.
    assert secure["fingerprint"] == report["status"]["secure"]["tls_fingerprint"]
    assert report["status"]["plain"]["discovery"] == "advertised as 'Front desk box' on 127.0.0.1"
    assert "mDNS: announcing 'Lab box' on 127.0.0.1" in report["status"]["secure"]["banner"]
    # Someone already browsing sees the boxes leave when they stop, not an hour later.
    assert {name.split("._appliance")[0] for name in report["watcher_saw"]} == set(boxes)
    assert report["watcher_after_stop"] == []


def test_a_box_without_multicast_serves_and_says_why_it_is_not_announced(tmp_path: Path) -> None:
    report = scenario(tmp_path, "box=", multicast=False)
    assert report["while_running"] == []
    discovery = report["status"]["box"]["discovery"]
    assert discovery.startswith("not announced: the API listens on 127.0.0.1")
    assert discovery.endswith("lo carries no multicast; nothing announced")


def test_discovery_switched_off_announces_nothing(tmp_path: Path) -> None:
    report = scenario(tmp_path, "box=APPLIANCE_DISCOVERY__ENABLED:false")
    assert report["while_running"] == []
    assert report["status"]["box"]["discovery"] == "off"
    assert "mDNS: off (discovery.enabled)" in report["status"]["box"]["banner"]
