"""`vsda-train flow DATASET`: precompute the DIS optical-flow cache of a dataset."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from vsda_deploy.flow import DIS_PRESETS


class _PairRate(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} pairs/s" if task.speed else "- pairs/s")


def flow(
    dataset: str = typer.Argument(..., help="dataset spec, e.g. viper:/data/viper"),
    split: str = typer.Option("train", help="split whose frame pairs are cached"),
    k: int = typer.Option(1, "-k", help="frame distance of the pairs (t, t-k)"),
    preset: str = typer.Option("medium", help="DIS preset: ultrafast | fast | medium"),
    cache: Path | None = typer.Option(None, help="cache folder (default: DATASET_ROOT/.vsda_flow/PRESET)"),
    scale: float = typer.Option(1.0, help="run DIS on frames downscaled by this factor (0.5: 4x less time "
                                "and disk); training must use the same scale"),
    labelled: bool = typer.Option(False, "--labelled", help="only pairs whose frame t is labelled "
                                  "(what source training reads) instead of every frame with a t-k neighbour"),
    workers: int = typer.Option(1, help="parallel DIS threads (OpenCV already spreads one over the cores)"),
) -> None:
    """Precompute the optical-flow cache of a dataset, skipping pairs already cached."""
    from vsda_train.flow import DISFlowCache, default_cache_dir, flow_pairs, precompute_flow, spec_root

    if preset not in DIS_PRESETS:
        typer.echo(f"--preset {preset!r}: unknown DIS preset; choose from {sorted(DIS_PRESETS)}", err=True)
        raise typer.Exit(2)
    if not 0 < scale <= 1:
        typer.echo(f"--scale {scale}: must be in (0, 1]", err=True)
        raise typer.Exit(2)
    try:
        from vsda_train.data import build_dataset
    except ImportError as exc:
        typer.echo(f"vsda-train flow: the dataset loaders are not importable ({exc})", err=True)
        raise typer.Exit(2) from exc
    try:
        data = build_dataset(dataset, split=split, k=k, labels=labelled, flow=None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            folder = cache or default_cache_dir(spec_root(dataset), preset)  # where training looks
        for w in caught:  # the read-only-root fallback: say where the cache went
            typer.echo(str(w.message), err=True)
        provider = DISFlowCache(folder, preset, scale=scale)
        pairs = flow_pairs(data)
        with Progress(TextColumn("flow {task.description}"), BarColumn(), MofNCompleteColumn(), _PairRate(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True)) as bar:
            task = bar.add_task(f"{preset} {split}", total=len(pairs))
            stats = precompute_flow(data, provider, pairs, workers=workers,
                                    on_pair=lambda _computed: bar.advance(task))
    except (OSError, ValueError) as exc:  # FileNotFoundError is an OSError
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    rate = stats.computed / stats.seconds if stats.seconds > 0 else 0.0
    typer.echo(f"flow cache {folder}: {stats.computed} pairs computed, {stats.cached} already cached, "
               f"{stats.seconds:.1f} s ({rate:.1f} computed pairs/s)")
