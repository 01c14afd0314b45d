"""drivers/npu_smi.py against recorded `npu-smi` outputs (tests/fixtures/npu-smi, sources in
tests/fixtures/README.md)."""

from __future__ import annotations

from pathlib import Path

from appliance.drivers.npu_smi import (
    board_versions,
    health_detail,
    parse_blocks,
    parse_info,
    usages_memory,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "npu-smi"


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_eight_910b3_cards_give_eight_chips_with_hbm_memory_and_power() -> None:
    info = parse_info(read("info-910b3-x8.txt"))

    assert info.driver_version == "23.0.7"
    assert [chip.npu_id for chip in info.chips] == list(range(8))
    first = info.chips[0]
    assert (first.name, first.health, first.bus_id) == ("910B3", "OK", "0000:c1:00.0")
    assert (first.power_w, first.temperature_c, first.aicore_pct) == (102.8, 55.0, 0.0)
    # The DDR pair `0 / 0` comes first; the device memory is the HBM pair after it.
    assert (first.memory_used_mib, first.memory_total_mib) == (3338, 65536)


def test_300i_duo_has_two_chips_behind_one_bus_id_with_ddr_memory_and_no_power() -> None:
    info = parse_info(read("info-310p3-duo-25.2.0.txt"))

    assert info.driver_version == "25.2.0"
    assert [(c.npu_id, c.chip_id, c.bus_id) for c in info.chips] == [
        (2, 0, "0000:01:00.0"),
        (2, 1, "0000:01:00.0"),
    ]
    assert [c.power_w for c in info.chips] == [None, None]  # `NA`
    assert [(c.memory_used_mib, c.memory_total_mib) for c in info.chips] == [
        (1529, 44280),
        (1412, 43693),
    ]


def test_sparse_card_ids_and_misaligned_separators_of_older_drivers_are_read() -> None:
    info = parse_info(read("info-310p3-x2-23.0.rc3.txt"))

    assert [(c.npu_id, c.bus_id, c.memory_total_mib) for c in info.chips] == [
        (0, "0000:01:00.0", 21527),
        (64, "0000:06:00.0", 21527),
    ]


def test_910c_power_dash_on_the_second_die_reads_as_unknown() -> None:
    info = parse_info(read("info-910c-a3-25.2.1.txt"))

    assert [(c.name, c.chip_id, c.power_w) for c in info.chips] == [
        ("Ascend910", 0, 166.5),
        ("Ascend910", 1, None),
        ("Ascend910", 0, 168.1),
    ]


def test_glued_memory_pair_and_process_table_of_driver_26_are_handled() -> None:
    info = parse_info(read("info-910c-a3-26.0.rc2.txt"))

    assert [(c.npu_id, c.memory_used_mib) for c in info.chips] == [(0, 3419), (7, 31877)]


def test_garbled_or_empty_output_yields_no_chips_instead_of_an_error() -> None:
    assert parse_info("+---+\n| npu-smi ??? |\n|  ###  | x |\n").chips == []
    assert parse_info("").chips == []
    assert parse_info(read("info-910b3-x8.txt")[:400]).chips == []  # cut mid-table


def test_usages_blocks_split_per_chip_and_give_hbm_capacity_and_rate() -> None:
    assert usages_memory(read("usages-910b1.txt")) == (65536, 4.0)
    blocks = parse_blocks(read("usages-310p3-duo.txt"))
    assert [block["Chip ID"] for block in blocks] == ["0", "1"]
    assert usages_memory(read("usages-310p3-duo.txt")) == (44280, 3.0)


def test_board_and_health_forms_give_firmware_and_a_health_line() -> None:
    assert board_versions(read("board-910b-chip.txt")) == {"firmware": "7.1.0.4.218"}
    assert health_detail(read("health-950-template.txt")) == "health OK"
    assert health_detail("Health : Critical\nError Code : 80E18005\nError Information : HBM") == (
        "health Critical, error code 80E18005: HBM"
    )
