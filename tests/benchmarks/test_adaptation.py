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


def test_self_training_rows_carry_their_pseudo_label_figures(tmp_path) -> None:
    """run_row reads each seed's eval and its last pseudo-label stats; the table prints their mean ± std,
    and leaves the raw labels' mIoU out where a stats file predates it."""
    import json

    from benchmarks.adaptation import markdown, run_row, summarise

    scores = {"miou": 30.0, "vpq": 20.0, "vpq_things": 1.0, "vpq_stuff": 30.0, "tc": 60.0, "iou": {"road": 90.0}}
    figures = [{"kept_fraction": 56.0, "accuracy_kept": 88.0, "accuracy_raw": 75.0, "miou_raw": 31.0},
               {"kept_fraction": 58.0, "accuracy_kept": 90.0, "accuracy_raw": 77.0, "miou_raw": 35.0}]
    for seed, stats in enumerate(figures):
        for row, keys in (("mt", stats), ("vat_vst", {k: v for k, v in stats.items() if k != "miou_raw"})):
            folder = tmp_path / f"{row}_s{seed}"
            (folder / "pseudo" / "teacher").mkdir(parents=True)
            (folder / "eval.json").write_text(json.dumps(scores))
            (folder / "pseudo" / "teacher" / "stats.json").write_text(json.dumps(keys))
    summary = summarise({row: [run_row(row, s, None, tmp_path) for s in (0, 1)] for row in ("mt", "vat_vst")},
                        [0, 1])
    assert summary["rows"]["mt"]["pseudo_miou_raw"] == [31.0, 35.0]
    assert "pseudo_miou_raw" not in summary["rows"]["vat_vst"]
    lines = markdown(summary).splitlines()
    mt = next(line for line in lines if "filtered by time |" in line)
    assert mt.endswith("| 89.0 ± 1.4 | 57.0 ± 1.4 | 33.0 ± 2.8 |")  # std of (31, 35): 2 * sqrt(2)
    vst = next(line for line in lines if "the seed's video self-training" in line)
    assert vst.endswith("| 89.0 ± 1.4 | 57.0 ± 1.4 |  |")
