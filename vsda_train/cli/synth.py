"""`vsda-train synth OUT`: generate the synthetic sim-to-real video benchmark."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from vsda_deploy.errors import VsdaError
from vsda_deploy.options import OptionError, parse_hw
from vsda_train.cores import usable_cores
from vsda_train.synth import SynthConfig, generate, total_frames

_D = SynthConfig()


def synth(
    out: Path = typer.Argument(..., help="output folder (must be empty unless --force)"),
    seed: int = typer.Option(_D.seed, help="random seed: the same seed writes byte-identical labels"),
    width: int = typer.Option(_D.width, help="frame width in pixels"),
    height: int = typer.Option(_D.height, help="frame height in pixels"),
    source_size: str | None = typer.Option(None, "--source-size", help="source (VIPER) frames HxW, e.g. "
                                          "1080x1920 (default: HEIGHTxWIDTH like the target)"),
    source_clips: int = typer.Option(_D.source_clips, help="labelled source (VIPER) training clips"),
    source_val_clips: int = typer.Option(_D.source_val_clips, help="source validation clips (sanity checks)"),
    target_train_clips: int = typer.Option(_D.target_train_clips, help="unlabelled target training clips"),
    target_val_clips: int = typer.Option(_D.target_val_clips, help="target validation clips (every 5th frame "
                                         "labelled)"),
    frames: int = typer.Option(_D.frames, help="frames per clip"),
    force: bool = typer.Option(False, "--force", help="overwrite the benchmark files in a non-empty OUT"),
    workers: int = typer.Option(0, min=0, help="processes rendering clips (0: one per usable core); the "
                                "files do not depend on it"),
) -> None:
    """Generate the synthetic sim-to-real video benchmark (source: VIPER format, target: Cityscapes-VPS)."""
    console = Console(stderr=True)
    try:
        src = None if source_size is None else parse_hw(source_size, "--source-size")
        config = SynthConfig(seed=seed, width=width, height=height, source_size=src, source_clips=source_clips,
                             source_val_clips=source_val_clips, target_train_clips=target_train_clips,
                             target_val_clips=target_val_clips, frames=frames)
    except OptionError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    start = time.perf_counter()
    columns = (TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
               TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("synth", total=total_frames(config))
            summary = generate(out, config, force=force, on_frame=lambda: progress.advance(task),
                               workers=workers or usable_cores())
    except (VsdaError, OSError) as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    _print_summary(summary, out, time.perf_counter() - start)


def _print_summary(summary: dict, out: Path, seconds: float) -> None:
    """Print the per-class pixel shares of both domains and one line of counts."""
    table = Table(title="class pixels (%)", box=None)
    splits = ("source_train", "target_train", "target_val")
    table.add_column("class")
    for split in splits:
        table.add_column(split.replace("_", " "), justify="right")
    for name in (*summary["classes"]["source_train"]["pixels_percent"], "void"):
        cells = [summary["classes"][k] for k in splits]
        values = [c["void_percent"] if name == "void" else c["pixels_percent"][name] for c in cells]
        table.add_row(name, *(f"{v:.2f}" for v in values))
    Console().print(table)
    c, tv = summary["counts"], summary["counts"]["target_val"]
    typer.echo(f"wrote {out} in {seconds:.0f} s: {c['source_train']['frames']} source frames, "
               f"{c['target_train']['frames']} target-train and {tv['frames']} target-val frames "
               f"({tv['labelled_frames']} labelled); details in {out / 'summary.json'}")
