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


def test_each_phase_2_row_differs_from_its_twin_in_time_only() -> None:
    """The video rows and their image twins share every setting but the temporal part; the seed's VST
    stays exactly the config's own."""
    from dataclasses import asdict

    from benchmarks.adaptation import WIDE_VST, row_config
    from vsda_train.config import load_config

    base = load_config("configs/synth_edge.yaml", [])
    vst = {row: asdict(row_config(row, base).vst) for row in ("image_st", "vat_vst", "vst_wide", "mt", "mt_img")}
    assert vst["vat_vst"] == asdict(base.vst)
    assert {k for k in vst["vat_vst"] if vst["vat_vst"][k] != vst["image_st"][k]} == {"temporal_filter"}
    assert {k for k in vst["mt"] if vst["mt"][k] != vst["mt_img"][k]} == {"temporal_filter"}
    assert {k: v for k, v in vst["vst_wide"].items() if v != vst["vat_vst"][k]} == {
        "neighbours": WIDE_VST["neighbours"], "class_top_fraction": WIDE_VST["class_top_fraction"]}


def test_the_oracle_trains_as_long_as_the_longest_chain() -> None:
    """configs/synth_edge.yaml: source 1,500 + VAT 1,000 + phase 2 1,000 = 3,500 oracle updates; the
    other source-phase rows keep the source phase's 1,500."""
    from benchmarks.adaptation import chain_budget, row_config
    from vsda_train.config import for_phase, load_config

    base = load_config("configs/synth_edge.yaml", [])
    assert chain_budget(base) == 1500 + 1000 + 1000
    oracle = row_config("oracle", base)
    assert oracle.source.oracle and for_phase(oracle, "source").optim.iters == 3500
    assert for_phase(oracle, "vat").optim.iters == 1000  # only the source phase is lengthened
    for row in ("source_only", "source_aug"):
        cfg = row_config(row, base)
        assert not cfg.source.oracle and for_phase(cfg, "source").optim.iters == 1500
    short = load_config("configs/synth_edge.yaml", ["optim.phase_iters={source: 300, vat: 200, vst: 100}"])
    assert for_phase(row_config("oracle", short), "source").optim.iters == 600
