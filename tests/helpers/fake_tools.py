"""Vendor tools (`npu-smi`, `nvidia-smi`) as tiny executables on PATH.

Each fake prints a recorded output from tests/fixtures for the arguments it is given, or
misbehaves on purpose (prints nothing, exits non-zero, hangs, prints garbage), and appends its
arguments to `calls.log` so that tests can count how often the real code ran it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "fixtures"


class FakeTools:
    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.bin.mkdir(parents=True, exist_ok=True)
        self.log = bin_dir / "calls.log"

    def add(self, name: str, answers: dict[str, str], default: str = "exit 2") -> Path:
        """`answers` maps the joined arguments (`info`, `info -t board -i 0`, or a prefix
        ending in `*`) to a shell snippet; `print(fixture)` builds the usual one."""
        cases = "\n".join(f"  {_pattern(key)}) {action} ;;" for key, action in answers.items())
        script = self.bin / name
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> {shlex.quote(str(self.log))}\n'
            f'case "$*" in\n{cases}\n  *) {default} ;;\nesac\n'
        )
        script.chmod(0o755)
        return script

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def path(self, rest: str = "/usr/bin:/bin") -> str:
        return f"{self.bin}:{rest}"


def _pattern(key: str) -> str:
    """A shell `case` pattern: the arguments exactly, or as a prefix when `key` ends in `*`."""
    return f'"{key[:-1]}"*' if key.endswith("*") else f'"{key}"'


def print_fixture(relative: str) -> str:
    return f"cat {shlex.quote(str(FIXTURES / relative))}"


HANG = "sleep 30"
EMPTY = "true"
FAIL = "echo 'dcmi module initialize failed. ret is -8005' >&2; exit 3"
GARBLED = "printf '+---+\\n| npu-smi ??? |\\n|  ###  | x |\\n'"
