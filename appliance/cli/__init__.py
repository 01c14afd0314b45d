"""The `appliance` command line: one module per command group.

May import client, config, errors, records; `serve` imports the daemon; `tui` launches the UI.
Admin commands go through `appliance.client` when a daemon runs, else act on the store directly.
stdout carries data only; diagnostics go to stderr. Exit codes: 0 ok, 1 failed, 2 usage or
config, 3 daemon unreachable.
"""
