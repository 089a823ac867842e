"""The adaptation table on the synthetic benchmark: 11 methods x N seeds, mean ± std on target-val.

    python -m benchmarks.adaptation [--config configs/synth_edge.yaml] [--seeds 0,1,2] [--jobs 2] [--out DIR]

Rows: source-only, source-only + photometric augmentation, image-level adversarial training
(per-frame discriminator only), VAT, then from VAT: image-level self-training (no temporal
filter), VST (the seed's video self-training), VST with a wider window at its twin's label budget
(``WIDE_VST``), the mean-teacher phase 2 (``vst.teacher: ema``), its
cross-frame variant (``vst.pseudo_from: previous``, as TPS labels), their image-level twin (no
temporal filter), and the target oracle, trained for as many segmenter updates as the longest chain
(source + VAT + phase 2: ``chain_budget``). Every run is the *last*
checkpoint of its schedule (no model selection on target labels). Runs already finished
(``eval.json`` present) are reused, so an interrupted benchmark continues where it stopped. With
``--jobs N`` up to N runs train at once, each in its own process (one torch thread each is
advised: ``--set run.threads=1``), a run starting once the run it starts from has finished.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks import evidence
from benchmarks.suite import result_stem

ROWS = ("source_only", "source_aug", "image_adv", "vat", "image_st", "vat_vst", "vst_wide", "mt", "mt_tps", "mt_img",
        "oracle")
LABELS = {
    "source_only": "source-only", "source_aug": "source-only + photometric aug.",
    "image_adv": "image-level adversarial (per-frame D)", "vat": "VAT (video adversarial)",
    "image_st": "VAT + image-level self-training", "vat_vst": "VAT + VST (the seed's video self-training)",
    "vst_wide": "VAT + VST, frames t±1 and t±5, twin's label budget",
    "mt": "VAT + mean teacher (DACS mix, histogram-matched source), filtered by time",
    "mt_tps": "VAT + mean teacher (DACS mix, histogram-matched source), cross-frame labels (TPS)",
    "mt_img": "VAT + mean teacher (DACS mix, histogram-matched source), image-level twin",
    "oracle": "target oracle (target labels, the chain's updates)",
}
# what each row starts from
INIT = {"image_adv": "source_only", "vat": "source_only", "image_st": "vat", "vat_vst": "vat", "vst_wide": "vat",
        "mt": "vat", "mt_tps": "vat", "mt_img": "vat"}
PHASE = {"source_only": "source", "source_aug": "source", "oracle": "source", "image_adv": "vat", "vat": "vat",
         **dict.fromkeys(("image_st", "vat_vst", "vst_wide", "mt", "mt_tps", "mt_img"), "vst")}  # each row's phase
# the order runs start in: the longest chains (source-only -> VAT -> phase 2) first
SCHEDULE = ("source_only", "vat", "mt", "mt_tps", "vat_vst", "vst_wide", "mt_img", "image_st", "image_adv",
            "source_aug", "oracle")

# VST voting over frames t±1 and t±5, with the class top-fraction that keeps at least as many pixels
# as its image twin (image_st, 60.5 %). Chosen on target-train against the oracle tree (seeds 0, 1):
# kept 62.0 / 61.4 %, accuracy 77.5 / 75.8 % against the twin's 76.0 / 74.0 %; the seed's window
# (t±1, top 0.6) keeps 56.1 / 55.6 % at 78.0 / 76.2 %.
# the pseudo-label figures of a self-training row, measured on target-train against the oracle tree:
# share of pixels kept, accuracy of the kept labels and of the raw ones, mIoU of the raw labels
PSEUDO_FIGURES = ("kept_fraction", "accuracy_kept", "accuracy_raw", "miou_raw")
WIDE_VST = {"neighbours": (-5, -1, 1, 5), "class_top_fraction": 0.7}


def chain_budget(cfg: Any) -> int:
    """Return the segmenter updates of the longest chain (source, VAT, phase 2): the oracle's length.

    Trained for the source phase's length only, the oracle would have fewer updates than the rows it
    bounds, and the gap it measures would mix target labels with training time."""
    return sum(int(cfg.optim.phase_iters.get(phase, cfg.optim.iters)) for phase in ("source", "vat", "vst"))


def row_config(row: str, cfg: Any) -> Any:
    """Return the config of ``row``: the base config with the row's method switched on."""
    if row == "oracle":
        optim = replace(cfg.optim, phase_iters={**cfg.optim.phase_iters, "source": chain_budget(cfg)})
        return replace(cfg, optim=optim, source=replace(cfg.source, oracle=True, augment="none"))
    if PHASE[row] == "source":
        return replace(cfg, source=replace(cfg.source, oracle=False,
                                           augment="strong" if row == "source_aug" else "none"))
    if row == "image_adv":
        return replace(cfg, vat=replace(cfg.vat, video_disc=False, image_disc=True))
    if row == "vst_wide":
        return replace(cfg, vst=replace(cfg.vst, teacher="offline", temporal_filter=True, **WIDE_VST))
    teacher = "ema" if row in ("mt", "mt_tps", "mt_img") else "offline"
    return replace(cfg, vst=replace(cfg.vst, teacher=teacher, temporal_filter=row not in ("image_st", "mt_img"),
                                    pseudo_from="previous" if row == "mt_tps" else "current"))


def _train(row: str, cfg: Any, init: str | None) -> Any:
    from vsda_train.chain import train_phase

    return train_phase(row_config(row, cfg), PHASE[row], init=init, resume=True)


def run_row(row: str, seed: int, base: Any, out_dir: Path) -> dict:
    """Train (or reuse) one row for one seed; return its eval JSON (+ pseudo-label stats)."""
    from vsda_train.config import with_run
    from vsda_train.evaluate import evaluate_run

    name = f"{row}_s{seed}"
    folder = out_dir / name
    if (folder / "eval.json").is_file():
        result = json.loads((folder / "eval.json").read_text())
    else:
        cfg = with_run(base, seed=seed, name=name, out_dir=str(out_dir))
        init = str(out_dir / f"{INIT[row]}_s{seed}" / "last.pt") if row in INIT else None
        result = evaluate_run(_train(row, cfg, init))
    stats = sorted((folder / "pseudo").glob("*/stats.json"))
    if stats:  # the last pseudo labels (offline: the last round; mean teacher: its teacher at the end)
        s = json.loads(stats[-1].read_text())
        result["pseudo_labels"] = {k: s.get(k) for k in PSEUDO_FIGURES}
    return result


def summarise(results: dict[str, list[dict]], seeds: list[int]) -> dict:
    """Return the benchmark JSON: per row the per-seed scores (+ pseudo-label figures) and the checks."""
    rows = {}
    for row, per_seed in results.items():
        entry = {k: [r.get(k) for r in per_seed] for k in ("miou", "vpq", "vpq_things", "vpq_stuff", "tc")}
        entry["iou"] = [r.get("iou", {}) for r in per_seed]
        if per_seed and all("pseudo_labels" in r for r in per_seed):
            for k in PSEUDO_FIGURES:
                vals = [r["pseudo_labels"].get(k) for r in per_seed]
                if all(v is not None for v in vals):  # miou_raw: absent from stats written before it was counted
                    entry[f"pseudo_{k}"] = vals
        rows[row] = entry
    out: dict[str, Any] = {"rows": rows, "seeds": seeds}
    mean = {row: evidence.mean_std(r["miou"])[0] for row, r in rows.items() if r["miou"]}
    if {"source_only", "oracle"} <= set(mean):
        so, gap = mean["source_only"], mean["oracle"] - mean["source_only"]
        out["checks"] = {"oracle_minus_source": gap,
                         **{f"gap_closed_by_{row}": (mean[row] - so) / gap for row in mean
                            if row not in ("source_only", "oracle") and gap > 0}}
    return out


def _fmt(vals: list) -> str:
    if not vals or any(v is None for v in vals):
        return "-"
    return "{:.1f} ± {:.1f}".format(*evidence.mean_std(vals))


def markdown(summary: dict) -> str:
    """Return the tables (mean ± std over seeds): the scores, then the per-class IoU."""
    seeds = len(summary["seeds"])
    head = f"method ({seeds} seed{'s' if seeds > 1 else ''}, target-val)"
    lines = [f"| {head} | mIoU | VPQ | VPQ things | VPQ stuff | TC | pseudo-label acc. | kept | raw labels' mIoU |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    present = [row for row in ROWS if row in summary["rows"]]
    for row in present:
        r = summary["rows"][row]
        cells = [_fmt(r[k]) for k in ("miou", "vpq", "vpq_things", "vpq_stuff", "tc")]
        cells += [_fmt(r[k]) if k in r else "" for k in ("pseudo_accuracy_kept", "pseudo_kept_fraction",
                                                         "pseudo_miou_raw")]
        lines.append(f"| {LABELS[row]} | {' | '.join(cells)} |")
    classes = list(summary["rows"][present[0]]["iou"][0]) if present and summary["rows"][present[0]]["iou"] else []
    if classes:
        lines += ["", "| per-class IoU (mean over seeds) | " + " | ".join(classes) + " |",
                  "| --- |" + " --- |" * len(classes)]
        for row in present:
            per = summary["rows"][row]["iou"]
            cells = []
            for c in classes:
                vals = [p.get(c) for p in per if p.get(c) is not None]
                cells.append(f"{statistics.fmean(vals):.1f}" if vals else "-")
            lines.append(f"| {LABELS[row]} | " + " | ".join(cells) + " |")
    if summary.get("goals"):
        lines += ["", evidence.markdown(summary["goals"])]
    ceiling = summary.get("checks", {}).get("panoptic_ceiling")
    if ceiling:
        lines += ["", f"Ground-truth semantics through the same panoptic step score VPQ {ceiling['vpq']:.1f} "
                  f"(things {ceiling['vpq_things']:.1f}, stuff {ceiling['vpq_stuff']:.1f}): the ceiling of a "
                  "semantic model."]
    sizes = summary.get("checks", {}).get("thing_sizes")
    if sizes:
        listed = ", ".join(f"{c} {s['median_area']:.0f} px ({s['small']:.0f} % of {s['instances']})"
                           for c, s in sizes.items())
        lines += ["", f"Val thing instances, median area and share under {evidence.SMALL_AREA} pixels (at most "
                  f"2 x 2 logits of a stride-8 model): {listed}."]
    fates = summary.get("checks", {}).get("oracle_thing_fates")
    if fates:
        lines += ["", _fates_line(fates)]
    in_domain = summary.get("checks", {}).get("source_only_in_domain")
    if in_domain:
        per_class = ", ".join(f"{c} {v:.1f}" for c, v in in_domain["per_class"].items())
        lines += ["", f"In its own domain, the seed-{in_domain['seed']} source-only model scores "
                  f"{in_domain['pq_things']:.1f} image PQ-things on the source's {in_domain['split']} frames "
                  f"({in_domain['frames']} frames, VIPER instances; {per_class}): what a semantic model of this "
                  "size scores on things before any domain gap."]
    return "\n".join(lines)


def _percent(n: int, total: int) -> str:
    share = 100 * n / total
    return "< 1 %" if 0 < share < 0.5 else f"{share:.0f} %"


def _fates_line(fates: dict) -> str:
    """Say, per thing class, what share of the large val instances the oracle's components match."""
    words = {"match": "matched", "merged": "merged with a neighbour", "partial": "partial", "missed": "missed",
             "other": "spilling over"}
    def shares(counts: dict[str, int]) -> str:
        total = sum(counts.values())
        return ", ".join(f"{_percent(n, total)} {words[f]}" for f, n in counts.items() if n)

    truth = fates.get("ground_truth", {})
    per_class = [f"{cls} ({sum(counts.values())}): {shares(counts)}"
                 + (f" (ground truth: {shares(truth[cls])})" if cls in truth else "")
                 for cls, counts in fates["classes"].items()]
    return (f"What the panoptic step makes of the seed-{fates['seed']} oracle's prediction, and of the "
            f"ground-truth semantics, for each val thing instance of at least {fates['min_area']} pixels "
            "(one whole logit; a match is IoU > 0.5 in its frame): " + "; ".join(per_class) + ".")


def _task(row: str, seed: int, config: str, overrides: list[str], out_dir: str) -> dict:
    """Train one (row, seed) in a worker process; return its result."""
    os.environ.setdefault("VSDA_NO_PROGRESS", "1")
    from vsda_train.config import load_config

    return run_row(row, seed, load_config(config, overrides), Path(out_dir))


def runs_needed(rows: list[str], seeds: list[int]) -> set[tuple[str, int]]:
    """Return every ``(row, seed)`` to train: the rows asked for and the whole chain each starts from."""
    needed: set[tuple[str, int]] = set()
    for row in rows:
        step: str | None = row
        while step is not None:
            needed |= {(step, s) for s in seeds}
            step = INIT.get(step)
    return needed


def run_benchmark(config: str, seeds: list[int], rows: list[str], out_dir: Path, jobs: int = 1,
                  log: Callable[[str], None] = print, overrides: list[str] | None = None) -> dict:
    """Train every (row, seed) and its inits, ``jobs`` at a time; return the summary."""
    needed = runs_needed(rows, seeds)
    done: dict[tuple[str, int], dict] = {}
    running: dict[Future, tuple[str, int]] = {}
    with ProcessPoolExecutor(max(1, jobs), mp_context=get_context("spawn")) as pool:
        while len(done) < len(needed):
            ready = [t for t in sorted(needed, key=lambda t: (SCHEDULE.index(t[0]), t[1]))
                     if t not in done and t not in running.values()
                     and (t[0] not in INIT or (INIT[t[0]], t[1]) in done)]
            for row, seed in ready[: max(1, jobs) - len(running)]:
                running[pool.submit(_task, row, seed, config, list(overrides or []), str(out_dir))] = (row, seed)
            if not running:  # nothing can start: a run's init is not among the runs needed
                raise RuntimeError(f"adaptation: no run can start; waiting for {sorted(set(needed) - set(done))}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                key = running.pop(future)
                done[key] = future.result()
                log(f"seed {key[1]} {key[0]}: mIoU {done[key]['miou']:.1f} VPQ {done[key]['vpq']:.1f}")
    return summarise({r: [done[(r, s)] for s in seeds] for r in rows}, seeds)


def add_evidence(summary: dict, config: str, overrides: list[str], runs: Path | None = None) -> None:
    """Add the panoptic ceiling, the thing sizes, the oracle's thing fates and the source-only model's
    in-domain thing PQ (first seed, from ``runs``) and the colour check of the val data to the checks,
    then the goals."""
    from vsda_train.config import load_config
    from vsda_train.evaluate import checkpoint_predictor

    data = load_config(config, overrides).data
    kind, _, root = data.val.partition(":")
    checks = summary.setdefault("checks", {})
    seed = summary["seeds"][0]
    source_only = runs / f"source_only_s{seed}" / "last.pt" if runs else None
    source_kind, _, source_root = data.source.partition(":")
    if source_only and source_only.is_file() and source_kind == "viper" and data.label_space == "viper15":
        checks["source_only_in_domain"] = {"seed": seed, "split": "val", **evidence.source_thing_pq(
            checkpoint_predictor(source_only)[0], source_root)}
    if kind == "cityscapes-vps":
        checks["panoptic_ceiling"] = evidence.panoptic_ceiling(root, data.label_space)
        checks["thing_sizes"] = evidence.thing_sizes(root, data.label_space)
        oracle = runs / f"oracle_s{summary['seeds'][0]}" / "last.pt" if runs else None
        if oracle and oracle.is_file():
            checks["oracle_thing_fates"] = {
                "seed": summary["seeds"][0], "min_area": evidence.LARGE_AREA,
                "classes": evidence.thing_fates(checkpoint_predictor(oracle)[0], root, data.label_space),
                "ground_truth": evidence.thing_fates(None, root, data.label_space)}
        if (Path(root).parent / "summary.json").is_file():  # a synthetic benchmark: its colour check
            checks["colour_gap"] = evidence.colour_gap(Path(root).parent)
    summary["goals"] = evidence.assess(summary)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/synth_edge.yaml")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, one process each")
    p.add_argument("--runs", default="runs/adaptation", help="folder of the individual runs")
    p.add_argument("--out", default="benchmarks/results", help="folder for adaptation-<host>-<date>.json and .md")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="config override section.key=value (e.g. run.threads=1), repeatable")
    a = p.parse_args(argv)
    os.environ.setdefault("VSDA_NO_PROGRESS", "1")
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = [r for r in a.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        p.error(f"--rows: unknown {unknown}; choose from {list(ROWS)}")
    summary = run_benchmark(a.config, seeds, rows, Path(a.runs), a.jobs, overrides=a.overrides)
    add_evidence(summary, a.config, a.overrides, Path(a.runs))
    summary["config"] = a.config
    summary["overrides"] = a.overrides
    out = Path(a.out) / f"{result_stem('adaptation', socket.gethostname(), dt.date.today().isoformat())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    table = markdown(summary)
    out.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {out} and its .md")
    print(table)
    if "checks" in summary:
        print(json.dumps(summary["checks"], indent=1))


if __name__ == "__main__":
    main()
