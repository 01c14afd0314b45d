"""The hooks the box ships, each an executable (`appliance-hook-<name>` in the venv's bin/) that
the package links into the event folders of `/etc/ai-appliance/hooks.d`.

They follow the hook contract in firmware_hooks/README.md: the event payload on stdin, one line
per finding on stdout, the reason for a failure last on stderr, exit 0 when all is well. They
may import the standard library, `appliance.records` and the pure output parsers in
`appliance.drivers` (no hardware access through the daemon, no API, no engine).
"""
