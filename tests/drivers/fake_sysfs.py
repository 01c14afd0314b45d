"""Fake sysfs trees for driver tests: PCI functions written as files, the way the kernel shows
them, so the real scan code reads them unchanged.

A helper module, not a conftest.py: other test folders import `Daemon` from the top-level
`conftest`, and a second conftest module here would shadow it.

The ids written in the tests are real ones quoted in shared/reference/accelerators.md (lspci
captures of H100, H200, 910B hosts) and in a public lspci capture of a 910B host whose iBMC
shows up as 19e5:1711 (see tests/fixtures/README.md).
"""

from __future__ import annotations

from pathlib import Path


class FakeSysfs:
    """A temporary `/sys` with `bus/pci/devices/<address>/` entries."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "bus" / "pci" / "devices").mkdir(parents=True)
        (root / "bus" / "pci" / "drivers").mkdir(parents=True)

    def add_pci(
        self,
        address: str,
        vendor: int,
        device: int,
        class_code: int,
        *,
        driver: str | None = None,
        numa_node: int = -1,
        physfn: str | None = None,
    ) -> Path:
        entry = self.root / "bus" / "pci" / "devices" / address
        entry.mkdir()
        # The kernel writes these as lower-case hex with 0x and a newline.
        (entry / "vendor").write_text(f"0x{vendor:04x}\n")
        (entry / "device").write_text(f"0x{device:04x}\n")
        (entry / "class").write_text(f"0x{class_code:06x}\n")
        (entry / "numa_node").write_text(f"{numa_node}\n")
        if driver:
            driver_dir = self.root / "bus" / "pci" / "drivers" / driver
            driver_dir.mkdir(exist_ok=True)
            (entry / "driver").symlink_to(driver_dir)
        if physfn:
            (entry / "physfn").symlink_to(self.root / "bus" / "pci" / "devices" / physfn)
        return entry
