"""The adaptation benchmark's schedule: every row trains with the whole chain it starts from."""

from __future__ import annotations

from benchmarks.adaptation import INIT, ROWS, SCHEDULE, runs_needed


def test_a_phase_2_row_alone_brings_its_whole_chain() -> None:
    assert runs_needed(["mt_tps"], [0]) == {("mt_tps", 0), ("vat", 0), ("source_only", 0)}
    assert runs_needed(["oracle", "image_adv"], [0, 1]) == {
        ("oracle", 0), ("oracle", 1), ("image_adv", 0), ("image_adv", 1), ("source_only", 0), ("source_only", 1)}


def test_every_row_is_scheduled_after_the_run_it_starts_from() -> None:
    assert set(SCHEDULE) == set(ROWS)
    for row, init in INIT.items():
        assert SCHEDULE.index(init) < SCHEDULE.index(row), (row, init)
        assert {r for r, _ in runs_needed([row], [0])} >= {row, init}
