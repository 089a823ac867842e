"""`vsda-train flow`: fill the DIS optical-flow cache training reads, in worker processes, resumably.

    vsda-train flow -c CONFIG [--domain source|target|both] [--vst] [--split train] [--workers N] [--shard I/N]
    vsda-train flow DATASET [--resize HxW] [--labelled] [-k 1] [--preset medium] [--scale 1] [--cache DIR] ...

Bad options exit with status 2, failures while computing with status 1; either way one line says why
(vsda's own errors and file-system errors; any other exception is a bug and shows its traceback).
"""

from __future__ import annotations

import os
import re
import signal
import warnings
from pathlib import Path
from typing import Any

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

from vsda_deploy.errors import VsdaError
from vsda_deploy.flow import DIS_PRESETS
from vsda_deploy.options import OptionError

PLAIN_ONLY = ("-k", "--preset", "--cache", "--scale", "--labelled", "--resize")


class _PairRate(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} pairs/s" if task.speed else "- pairs/s")


class _RichReport:
    """The fill's report on the terminal: the estimate and summary lines, a progress bar per pass."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("flow {task.description}"), BarColumn(), MofNCompleteColumn(), _PairRate(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                            disable=os.environ.get("VSDA_NO_PROGRESS") == "1")
        self.task: Any = None
        self.folder: Path | None = None

    def start(self, plan: Any) -> None:
        self.folder = plan.flow_pass.cache.cache_dir
        self.task = self.bar.add_task(plan.flow_pass.name, total=plan.to_compute)

    def estimate(self, line: str) -> None:
        typer.echo(line)

    def advance(self, pairs: int) -> None:
        self.bar.advance(self.task, pairs)

    def finish(self, stats: Any) -> None:
        self.bar.remove_task(self.task)
        rate = stats.computed / stats.seconds if stats.seconds > 0 else 0.0
        typer.echo(f"flow cache {self.folder}: {stats.computed} pairs computed, {stats.cached} already cached, "
                   f"{stats.seconds:.1f} s ({rate:.1f} computed pairs/s)")


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _resize(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not m or min(int(m[1]), int(m[2])) < 1:
        raise OptionError(f"--resize {text!r}: expected HxW, e.g. 512x1024")
    return int(m[1]), int(m[2])


def _plain_options(k: int | None, preset: str | None, scale: float | None, cache: Path | None, labelled: bool,
                   resize: str | None) -> dict[str, Any]:
    """Return the plain form's options with their defaults; OptionError naming a bad one."""
    preset, scale = preset or "medium", 1.0 if scale is None else scale
    if preset not in DIS_PRESETS:
        raise OptionError(f"--preset {preset!r}: unknown DIS preset; choose from {sorted(DIS_PRESETS)}")
    if not 0 < scale <= 1:
        raise OptionError(f"--scale {scale}: must be in (0, 1]")
    if k is not None and k < 1:
        raise OptionError(f"-k {k}: the frame distance must be >= 1")
    return {"k": k or 1, "preset": preset, "scale": scale, "cache": cache, "labelled": labelled,
            "resize": _resize(resize)}


def _passes(dataset: str | None, config: Path | None, sets: list[str], domain: str, vst: bool, split: str,
            plain: dict[str, Any], given: list[str]) -> list[Any]:
    """Return the passes of the config form or of the plain form; VsdaError / OSError on bad input."""
    from vsda_train.flow_pairs import config_passes, dataset_pass

    if (dataset is None) == (config is None):
        raise OptionError("give either DATASET or --config CONFIG")
    if config is not None:
        if given:
            raise OptionError(f"{given[0]}: with --config this comes from the config (data.*); "
                             "change it with --set data.KEY=VALUE")
        from vsda_train.config import load_config

        return config_passes(load_config(config, sets), domain, vst, split)
    if vst or domain != "both" or sets:
        raise OptionError(f"{'--vst' if vst else '--set' if sets else '--domain'}: only with --config CONFIG")
    return [dataset_pass(dataset, split, **plain)]


def flow(
    dataset: str | None = typer.Argument(None, help="dataset spec, e.g. viper:/data/viper (or use --config)"),
    config: Path | None = typer.Option(None, "--config", "-c", help="training config: its datasets, samples, "
                                       "resize and flow settings say which pairs to fill"),
    sets: list[str] | None = typer.Option(None, "--set", "-s", help="config override section.key=value"),
    domain: str = typer.Option("both", help="with --config: source | target | both"),
    vst: bool = typer.Option(False, "--vst", help="with --config: also VST's temporal-filter pairs (t, t+o·k) "
                             "and (t+o·k, t) for o in vst.neighbours"),
    split: str = typer.Option("train", help="split whose frame pairs are cached"),
    k: int | None = typer.Option(None, "-k", help="frame distance of the pairs (t, t-k) [default: 1]"),
    preset: str | None = typer.Option(None, help="DIS preset: ultrafast | fast | medium [default: medium]"),
    cache: Path | None = typer.Option(None, help="cache folder [default: DATASET_ROOT/.vsda_flow/PRESET]"),
    scale: float | None = typer.Option(None, help="run DIS on frames downscaled by this factor (0.5: 4x less "
                                       "time and disk); training must use the same [default: 1]"),
    labelled: bool = typer.Option(False, "--labelled", help="only pairs whose frame t is labelled (what source "
                                  "training reads) instead of every frame with a t-k neighbour"),
    resize: str | None = typer.Option(None, "--resize", help="HxW the frames are resized to before DIS "
                                      "(training's data.*_resize) [default: as stored]"),
    workers: int = typer.Option(0, "--workers", help="worker processes, each with its share of the cores "
                                "[default 0: one per usable core]"),
    shard: str = typer.Option("0/1", "--shard", help="I/N: compute only every N-th chunk of pairs from the I-th "
                              "(a SLURM array task, one of several machines)"),
    estimate: bool = typer.Option(False, "--estimate", help="stop once the estimate line is printed"),
) -> None:
    """Fill the optical-flow cache training reads, skipping pairs already cached; print an estimate first."""
    from vsda_train.cores import usable_cores
    from vsda_train.flow_pairs import parse_shard
    from vsda_train.flow_precompute import fill_cache

    given = [name for name, value in zip(PLAIN_ONLY, (k, preset, cache, scale, labelled or None, resize))
             if value is not None]
    try:
        if workers < 0:
            raise OptionError(f"--workers {workers}: must be >= 0 (0: one per usable core)")
        where = parse_shard(shard)
        plain = _plain_options(k, preset, scale, cache, labelled, resize)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            passes = _passes(dataset, config, list(sets or []), domain, vst, split, plain, given)
    except (VsdaError, OSError) as exc:  # FileNotFoundError is an OSError
        raise _fail(str(exc), 2) from None
    for w in caught:  # the read-only-root fallback: say where the cache went
        typer.echo(str(w.message), err=True)
    report = _RichReport()
    signal.signal(signal.SIGTERM, _terminate)  # kill / SLURM: stop the workers, as Ctrl-C does
    try:
        with report.bar:
            fill_cache(passes, workers or usable_cores(), where, report, estimate)
    except (VsdaError, OSError) as exc:
        raise _fail(str(exc), 1) from None
