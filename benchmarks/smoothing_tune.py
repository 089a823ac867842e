"""Choose ``vsda-infer``'s smoothing defaults on target-**train** videos, then check them once on val.

    python -m benchmarks.smoothing_tune [--model runs/demo/export/model.onnx]
        [--train cityscapes-seq:data/synth/oracle] [--val cityscapes-vps:data/synth/target]
        [--alphas 0.3,0.45,0.6,0.75,0.85] [--json benchmarks/results/smoothing_tune.json]

Every (mode, alpha) streams the labelled target-train videos through ``run_inference`` exactly as
the CLI does. The chosen setting is the one with the highest TC whose mIoU is at most 0.5 below
``--smooth none`` on train; only then is it scored on val (never used to choose). The synthetic
benchmark's target-train labels live in its ``oracle`` tree, which exists for measurements like this.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from vsda_deploy.infer import InferOptions, run_inference

MIOU_BUDGET = 0.5  # smoothing may cost at most this much mIoU (points)


def score(model: Path, spec: str, split: str, mode: str, alpha: float) -> dict[str, float]:
    """Return mIoU, TC and VPQ of one smoothing setting on a labelled split."""
    report = run_inference(InferOptions(spec, model, smooth=mode, alpha=alpha, split=split, warmup=0)).report
    m = report["metrics"]
    return {"mode": mode, "alpha": alpha, "miou": m["miou"], "tc": m["tc"], "vpq": m["vpq"]}


def choose(rows: list[dict[str, float]]) -> dict[str, float]:
    """Return the smoothing row with the best TC within the mIoU budget of ``none``."""
    base = next(r for r in rows if r["mode"] == "none")
    fit = [r for r in rows if r["mode"] != "none" and r["miou"] >= base["miou"] - MIOU_BUDGET]
    return max(fit, key=lambda r: r["tc"]) if fit else base


def main(
    model: Path = typer.Option(Path("runs/demo/export/model.onnx"), "--model"),
    train: str = typer.Option("cityscapes-seq:data/synth/oracle", "--train", help="labelled target-train videos"),
    val: str = typer.Option("cityscapes-vps:data/synth/target", "--val", help="labelled target-val videos"),
    alphas: str = typer.Option("0.3,0.45,0.6,0.75,0.85", "--alphas"),
    json_out: Path = typer.Option(Path("benchmarks/results/smoothing_tune.json"), "--json"),
) -> None:
    """Sweep smoothing mode x alpha on target-train; report the choice and its val figures."""
    grid = [("none", 0.0)] + [(m, float(a)) for m in ("ema", "flow") for a in alphas.split(",")]
    rows = [score(model, train, "train", m, a) for m, a in grid]
    best = choose(rows)
    val_rows = [score(model, val, "val", "none", 0.0), score(model, val, "val", best["mode"], best["alpha"])]
    table = Table(title=f"smoothing on target-train ({train}), model {model}")
    for col in ("mode", "alpha", "mIoU", "TC", "VPQ"):
        table.add_column(col, justify="right")
    for r in rows:
        mark = " ←" if r is best else ""
        table.add_row(r["mode"], f"{r['alpha']:.2f}", f"{r['miou']:.2f}", f"{r['tc']:.1f}{mark}", f"{r['vpq']:.1f}")
    console = Console()
    console.print(table)
    none, chosen = val_rows
    console.print(f"val: none mIoU {none['miou']:.2f} TC {none['tc']:.1f} -> {best['mode']} alpha "
                  f"{best['alpha']:.2f}: mIoU {chosen['miou']:.2f} ({chosen['miou'] - none['miou']:+.2f}), "
                  f"TC {chosen['tc']:.1f} ({chosen['tc'] - none['tc']:+.1f})")
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps({"model": str(model), "train": train, "val": val, "train_rows": rows,
                                    "chosen": best, "val_rows": val_rows, "miou_budget": MIOU_BUDGET}, indent=1))


if __name__ == "__main__":
    typer.run(main)
