"""The adaptation table on the synthetic benchmark: 7 methods x N seeds, mean ± std on target-val.

    python -m benchmarks.adaptation [--config configs/synth_edge.yaml] [--seeds 0,1,2] [--out FILE]

Rows: source-only, source-only + photometric augmentation, image-level adversarial training
(per-frame discriminator only), VAT, image-level self-training (no temporal filter) from
VAT, VAT+VST, and the target oracle. Every run is the *last* checkpoint of its schedule (no
model selection on target labels). Runs already finished (``eval.json`` present) are reused,
so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROWS = ("source_only", "source_aug", "image_adv", "vat", "image_st", "vat_vst", "oracle")
LABELS = {
    "source_only": "source-only", "source_aug": "source-only + photometric aug.",
    "image_adv": "image-level adversarial (per-frame D)", "vat": "VAT (video adversarial)",
    "image_st": "VAT + image-level self-training", "vat_vst": "VAT + VST (video self-training)",
    "oracle": "target oracle (target labels)",
}
# what each row starts from
INIT = {"image_adv": "source_only", "vat": "source_only", "image_st": "vat", "vat_vst": "vat"}


def _train(row: str, cfg: Any, init: str | None) -> Any:
    from vsda_train.config import for_phase
    from vsda_train.phases import train_source, train_vat, train_vst

    if row in ("source_only", "source_aug", "oracle"):
        source = replace(cfg.source, oracle=row == "oracle", augment="strong" if row == "source_aug" else "none")
        return train_source(for_phase(replace(cfg, source=source), "source"), resume=True)
    if row in ("vat", "image_adv"):
        if row == "image_adv":
            cfg = replace(cfg, vat=replace(cfg.vat, video_disc=False, image_disc=True))
        return train_vat(for_phase(cfg, "vat"), init=init, resume=True)
    if row == "image_st":
        cfg = replace(cfg, vst=replace(cfg.vst, temporal_filter=False))
    return train_vst(for_phase(cfg, "vst"), init=init, resume=True)


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
    rounds = sorted((folder / "pseudo").glob("round*/stats.json"))
    if rounds:  # the last round's pseudo labels: how right they were, how many were kept
        stats = json.loads(rounds[-1].read_text())
        result["pseudo_labels"] = {k: stats.get(k) for k in ("kept_fraction", "accuracy_kept", "accuracy_raw")}
    return result


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: dict[str, list[dict]], seeds: list[int]) -> dict:
    """Return the benchmark JSON: per row the per-seed miou / vpq (+ pseudo-label figures)."""
    rows = {}
    for row, per_seed in results.items():
        entry = {"miou": [r["miou"] for r in per_seed], "vpq": [r["vpq"] for r in per_seed],
                 "tc": [r.get("tc") for r in per_seed]}
        if per_seed and "pseudo_labels" in per_seed[0]:
            for k in ("kept_fraction", "accuracy_kept", "accuracy_raw"):
                entry[f"pseudo_{k}"] = [r["pseudo_labels"][k] for r in per_seed]
        rows[row] = entry
    out: dict[str, Any] = {"rows": rows, "seeds": seeds}
    if {"source_only", "oracle", "vat", "vat_vst"} <= set(rows):
        so, orc = _mean_std(rows["source_only"]["miou"])[0], _mean_std(rows["oracle"]["miou"])[0]
        vat, vst = _mean_std(rows["vat"]["miou"])[0], _mean_std(rows["vat_vst"]["miou"])[0]
        gap = orc - so
        out["checks"] = {
            "oracle_minus_source": gap,
            "vat_minus_source": vat - so,
            "vst_minus_vat": vst - vat,
            "gap_closed_by_vat_vst": (vst - so) / gap if gap > 0 else None,
        }
    return out


def markdown(summary: dict) -> str:
    """Return the README table (mean ± std over seeds)."""
    seeds = len(summary["seeds"])
    lines = [f"| method ({seeds} seed{'s' if seeds > 1 else ''}, target-val) | mIoU | VPQ | pseudo-label acc. | kept |",
             "| --- | --- | --- | --- | --- |"]
    for row in ROWS:
        if row not in summary["rows"]:
            continue
        r = summary["rows"][row]
        fmt = lambda vals: "{:.1f} ± {:.1f}".format(*_mean_std(vals)) if all(  # noqa: E731
            v is not None for v in vals) else "-"
        acc = fmt(r["pseudo_accuracy_kept"]) if "pseudo_accuracy_kept" in r else ""
        kept = fmt(r["pseudo_kept_fraction"]) if "pseudo_kept_fraction" in r else ""
        lines.append(f"| {LABELS[row]} | {fmt(r['miou'])} | {fmt(r['vpq'])} | {acc} | {kept} |")
    return "\n".join(lines)


def run_benchmark(config: str, seeds: list[int], rows: list[str], out_dir: Path,
                  log: Callable[[str], None] = print, overrides: list[str] | None = None) -> dict:
    from vsda_train.config import load_config

    base = load_config(config, overrides)
    results: dict[str, list[dict]] = {r: [] for r in rows}
    for seed in seeds:
        for row in ROWS:  # fixed order: a row's init is trained before it
            if row in rows or any(INIT.get(r) == row for r in rows):
                res = run_row(row, seed, base, out_dir)
                if row in rows:
                    results[row].append(res)
                log(f"seed {seed} {row}: mIoU {res['miou']:.1f} VPQ {res['vpq']:.1f}")
    return summarise(results, seeds)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/synth_edge.yaml")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--runs", default="runs/adaptation", help="folder of the individual runs")
    p.add_argument("--out", default="benchmarks/results/adaptation.json")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="config override section.key=value (e.g. run.threads=1), repeatable")
    a = p.parse_args(argv)
    os.environ.setdefault("VSDA_NO_PROGRESS", "1")
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = [r for r in a.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        p.error(f"--rows: unknown {unknown}; choose from {list(ROWS)}")
    summary = run_benchmark(a.config, seeds, rows, Path(a.runs), overrides=a.overrides)
    summary["config"] = a.config
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(summary, indent=1))
    table = markdown(summary)
    Path(a.out).with_suffix(".md").write_text(table + "\n")
    print(table)
    if "checks" in summary:
        print(json.dumps(summary["checks"], indent=1))


if __name__ == "__main__":
    main()
