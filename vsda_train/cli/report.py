"""`vsda-train report RUN...` and `vsda-train colour-baseline DATA`: tables of finished runs and of the colour check."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from vsda_deploy.cityscapes_vps import dump_json
from vsda_train.cli.phases import guard


def report(runs: list[Path] = typer.Argument(..., help="run folders holding eval.json (runs/NAME)"),
           json_out: Path | None = typer.Option(None, "--json", help="also write {run: {metric: value}} here")) -> None:
    """Print one table (mIoU, VPQ, TC on the validation split) from the eval.json of several runs."""
    from vsda_train.evaluate import REPORT_METRICS, report_table

    scores = {}
    for folder in runs:
        path = folder / "eval.json"
        if not path.is_file():
            typer.echo(f"error: {path}: not found (did the run finish?)", err=True)
            raise typer.Exit(1)
        scores[str(folder)] = json.loads(path.read_text())
    Console().print(report_table(scores))
    if json_out is not None:
        dump_json(json_out, {f: {k: r.get(k) for _, k in REPORT_METRICS} for f, r in scores.items()})


def colour_baseline(
    data: Path = typer.Argument(..., help="output folder of `vsda-train synth`"),
    pred_out: Path | None = typer.Option(None, "--pred-out", help="write source-fitted target-val predictions here"),
    json_out: Path | None = typer.Option(None, "--json", help="write the figures as JSON here"),
) -> None:
    """The synthetic benchmark's own check: can colour alone carry from source to target? (nearest class mean)"""
    from vsda_train.synth.colour_baseline import print_table, run

    for sub in ("source", "oracle", "target"):
        if not (data / sub).is_dir():
            typer.echo(f"error: {data / sub}: not found; DATA must be a `vsda-train synth` output folder", err=True)
            raise typer.Exit(2)
    result = guard(run, data, pred_out)
    print_table(result, Console())
    if json_out is not None:
        dump_json(json_out, result)


def picture(
    checkpoints: list[str] = typer.Argument(..., help="TITLE=CKPT pairs, e.g. source-only=runs/demo/source/last.pt"),
    data: str = typer.Option(..., "--data", help="labelled target spec, e.g. cityscapes-vps:data/synth/target"),
    out: Path = typer.Option(Path("before_after.png"), "--out", "-o", help="the PNG to write"),
    frames: int = typer.Option(3, "--frames", min=1, help="labelled frames shown, spread over the split"),
) -> None:
    """A before/after picture: each checkpoint's classes on the same target frames, beside the labels."""
    from vsda_train.picture import write_before_after

    pairs = {}
    for item in checkpoints:
        title, sep, path = item.partition("=")
        if not sep or not title or not path:
            typer.echo(f"error: {item!r}: expected TITLE=CKPT", err=True)
            raise typer.Exit(2)
        pairs[title] = path
    typer.echo(f"wrote {guard(write_before_after, pairs, data, out, frames)}")
