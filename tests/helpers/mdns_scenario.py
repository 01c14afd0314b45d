"""Inside a private network namespace: start daemons, look for them as a LAN user would.

Run by tests/test_discovery.py through `helpers.netns`; prints one JSON report on stdout:
what `appliance discover --json` listed while the daemons ran, which of them a browser that was
watching still listed a moment after they stopped (their goodbye packets should clear them), and
what `appliance status --json` said about mDNS and TLS for each.

    python -m helpers.mdns_scenario HOME NAME=ENV[,ENV...] [NAME=...]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from zeroconf import ServiceBrowser, Zeroconf

from appliance.discovery import APPLIANCE_TYPE, NameCollector
from helpers.daemon import run_cli, start_daemon, stop_daemon


def main(root: Path, specs: list[str]) -> dict[str, object]:
    daemons = []
    watcher = Zeroconf()
    collector = NameCollector()
    report: dict[str, object] = {"status": {}}
    try:
        for spec in specs:
            label, _, settings = spec.partition("=")
            env = dict(item.split(":", 1) for item in settings.split(",") if item)
            home = root / label
            home.mkdir()
            # No model installed: "ready" never comes, but the API serves once the banner is out.
            daemons.append((label, start_daemon(home, wait_ready=False, **env)))
        report["while_running"] = json.loads(
            run_cli(root, "discover", "--json", "--timeout", "3").stdout
        )
        for label, daemon in daemons:
            status = json.loads(run_cli(daemon.home, "status", "--json").stdout)
            report["status"][label] = {  # type: ignore[index]
                "discovery": status["discovery"],
                "tls_fingerprint": status["tls_fingerprint"],
                "banner": daemon.banner,
                "port": daemon.base_url.rsplit(":", 1)[1].split("/")[0],
            }
        browser = ServiceBrowser(watcher, APPLIANCE_TYPE, listener=collector)
        time.sleep(2)
        report["watcher_saw"] = sorted(collector.names)
    finally:
        for _, daemon in daemons:
            stop_daemon(daemon)
    time.sleep(1.5)
    report["watcher_after_stop"] = sorted(collector.names)
    browser.cancel()
    watcher.close()
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2:])))
