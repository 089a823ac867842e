"""``python -m benchmarks SUITE``: what vsda does on this machine, as a table, JSON, Markdown and a plot.

    python -m benchmarks formats  [--model CKPT_OR_ONNX] [--data SPEC] [--device cpu|cuda:0] [--sizes 256x512,512x1024]
    python -m benchmarks stream   [--model ...] [--data ...] [--sizes 256x512]
    python -m benchmarks accuracy [--checkpoints source=A.pt,vat=B.pt,vst=C.pt,oracle=D.pt] [--data ...]
    python -m benchmarks train    [--models ddrnet23_slim:16,deeplabv2_r101] [--amp none,bf16] [--device cuda:0]
    python -m benchmarks metrics  [--data ...]
    python -m benchmarks latency  [--model CKPT | --widths 16,32] [--sizes 256x512,512x1024]
    python -m benchmarks smoothing [--model ONNX] [--train SPEC] [--data SPEC] [--alphas 0.3,0.85]
    python -m benchmarks data     [--workers 0,1,2] [--clips 24] [--utilisation 0.4] [--peak-tflops 989.4]
    python -m benchmarks rehearsal [--root runs/rehearsal] [--models deeplabv2,ddrnet]
    python -m benchmarks tables   [--check]     # the results tables of README.md and docs/ from the JSON
    python -m benchmarks compare A.json B.json

``data`` needs no dataset: it writes a small full-resolution VIPER-like and Cityscapes-like tree and
times the training DataLoader on it (clips/s, and the workers one GPU needs at the model's step rate).

Every suite writes ``<out>/<suite>-<host>-<date>.{json,md,png}`` (default ``--out benchmarks/results``).
Defaults are what ``make demo`` leaves: the VST checkpoint ``runs/demo/vst/last.pt`` and the synthetic
benchmark ``cityscapes-vps:data/synth/target``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from importlib import import_module
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from benchmarks.suite import (
    DEFAULT_DATA,
    DEFAULT_MODEL,
    SuiteOptions,
    compare,
    compare_table,
    load_result,
    parse_sizes,
    rich_table,
    write_result,
)
from vsda_deploy.options import OptionError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0],
                  pretty_exceptions_enable=False)
console = Console(width=None if Console().is_terminal else 160)

MODEL = typer.Option(DEFAULT_MODEL, "--model", help="checkpoint (.pt) or ONNX file")
DATA = typer.Option(DEFAULT_DATA, "--data", help="labelled target videos, cityscapes-vps:ROOT")
DEVICE = typer.Option("cpu", "--device", help="cpu or cuda:N")
OUT = typer.Option(Path("benchmarks/results"), "--out", help="folder for the JSON, Markdown and PNG")
RUNS = typer.Option(50, "--runs", min=5, help="timed frames per row (the median is reported)")
WARMUP = typer.Option(10, "--warmup", min=0, help="untimed frames first")
THREADS = typer.Option(0, "--threads", min=0, help="CPU threads for ORT / torch (0: one per core)")


def _options(model: str, data: str, device: str, sizes: str, out: Path, runs: int = 50, warmup: int = 10,
             threads: int = 0) -> SuiteOptions:
    if not (device == "cpu" or device.startswith("cuda")):
        raise typer.BadParameter(f"{device!r}: use cpu or cuda:N", param_hint="--device")
    try:
        parsed = parse_sizes(sizes)
    except OptionError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--sizes: "), param_hint="--sizes") from None
    return SuiteOptions(model=model, data=data, device=device, sizes=parsed, out=out, runs=runs, warmup=warmup,
                        threads=threads)


def _finish(suite: str, result: Any, opts: SuiteOptions) -> None:
    """Print the table, write JSON / Markdown / PNG and say where."""
    plot = getattr(import_module(f"benchmarks.suites.{suite}"), "plot", None)
    paths = write_result(result, opts.out, plot)
    console.print(rich_table(result))
    for note in result.notes:
        console.print(f"- {note}")
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))


def _suite(name: str) -> Any:
    return import_module(f"benchmarks.suites.{name}")


@app.command()
def formats(model: str = MODEL, data: str = DATA, device: str = DEVICE,
            sizes: str = typer.Option("256x512,512x1024", "--sizes", help="latency input sizes HxW"),
            out: Path = OUT, runs: int = RUNS, warmup: int = WARMUP, threads: int = THREADS,
            calib_frames: int = typer.Option(64, "--calib-frames", min=1, help="INT8 calibration frames"),
            compile_: bool = typer.Option(None, "--compile/--no-compile",
                                          help="time torch.compile rows (default: on CUDA only)")) -> None:
    """Every format this machine can run: status, size, mIoU, VPQ, ms/frame, FPS."""
    opts = _options(model, data, device, sizes, out, runs, warmup, threads)
    _finish("formats", _suite("formats").run(opts, calib_frames=calib_frames, compile_=compile_), opts)


@app.command()
def stream(model: str = MODEL, data: str = DATA, device: str = DEVICE,
           sizes: str = typer.Option("", "--sizes", help="model input HxW (the first is used; default: each "
                                     "frame at its own size, so mIoU equals vsda-train eval)"),
           out: Path = OUT, warmup: int = WARMUP, threads: int = THREADS) -> None:
    """End-to-end vsda-infer on the val videos: FPS, per-stage p50/p95/p99, TC, mIoU per smoothing mode."""
    opts = _options(model, data, device, sizes or "256x512", out, warmup=warmup, threads=threads)
    if not sizes:
        opts = replace(opts, sizes=())
    _finish("stream", _suite("stream").run(opts), opts)


@app.command()
def accuracy(data: str = DATA,
             checkpoints: str = typer.Option(
                 "", "--checkpoints", help="NAME=CKPT list (source, vat, vst, oracle); missing ones are "
                 "taken from runs/demo or trained with --config"),
             config: str = typer.Option("configs/synth_edge.yaml", "--config", help="config to train missing rows"),
             train_missing: bool = typer.Option(True, "--train/--no-train", help="train rows with no checkpoint"),
             out: Path = OUT) -> None:
    """The adaptation table: source-only / VAT / VAT+VST / oracle (mIoU, VPQ, TC)."""
    opts = _options(DEFAULT_MODEL, data, "cpu", "256x512", out)
    _finish("accuracy", _suite("accuracy").run(opts, checkpoints=checkpoints, config=config,
                                               train_missing=train_missing), opts)


@app.command()
def train(device: str = DEVICE,
          models: str = typer.Option("", "--models", help="name[:width] list (default: per device)"),
          amp: str = typer.Option("", "--amp", help="none,bf16,fp16 (default: per device)"),
          sizes: str = typer.Option("", "--sizes", help="source crop HxW (default: per device)"),
          iters: int = typer.Option(0, "--iters", min=0, help="timed iterations per row (default: per device)"),
          out: Path = OUT) -> None:
    """Iterations/s and peak memory of the source, VAT and VST steps per model and AMP setting."""
    opts = _options(DEFAULT_MODEL, DEFAULT_DATA, device, sizes or "256x512", out)
    _finish("train", _suite("train").run(opts, models=models, amp=amp, sizes=sizes, iters=iters), opts)


@app.command()
def metrics(data: str = DATA, out: Path = OUT,
            runs: int = typer.Option(5, "--runs", min=1, help="repeats per metric (the median is reported)")) -> None:
    """Speed of mIoU / VPQ / TC evaluation on the val split."""
    opts = _options(DEFAULT_MODEL, data, "cpu", "256x512", out, runs=runs)
    _finish("metrics", _suite("metrics").run(opts), opts)


@app.command()
def latency(model: str = typer.Option("", "--model", help="a vsda checkpoint (default: random weights of "
                                      "--arch at each --widths)"),
            arch: str = typer.Option("ddrnet23_slim", "--arch", help="model name without --model"),
            widths: str = typer.Option("16,32", "--widths", help="widths without --model (16: the demo, 32: full)"),
            data: str = DATA, sizes: str = typer.Option("256x512,512x1024", "--sizes", help="input sizes HxW"),
            out: Path = OUT, runs: int = RUNS, warmup: int = typer.Option(5, "--warmup", min=0),
            threads: int = THREADS,
            dynamic: bool = typer.Option(True, "--dynamic/--static", help="export as vsda-export does by default"),
            calib_frames: int = typer.Option(32, "--calib-frames", min=1, help="INT8 calibration frames")) -> None:
    """CPU latency of PyTorch eager vs ONNX Runtime FP32 / FP16 / INT8, side by side, with the FP32 ceiling."""
    try:
        width_list = tuple(int(w) for w in widths.split(","))
    except ValueError:
        raise typer.BadParameter(f"{widths!r}: expected widths like 16,32", param_hint="--widths") from None
    opts = _options(model or DEFAULT_MODEL, data, "cpu", sizes, out, runs, warmup, threads)
    progress = lambda row: console.print(f"{row.name}: " + ", ".join(  # noqa: E731
        f"{k.removesuffix('_ms')} {v:.1f} ms" for k, v in row.values.items() if k.endswith("_ms")
        and not k.endswith("p90_ms")))
    _finish("latency", _suite("latency").run(opts, model or None, arch, width_list, dynamic, calib_frames,
                                             on_row=progress), opts)


@app.command()
def smoothing(model: str = typer.Option("runs/demo/export/model.onnx", "--model", help="ONNX model"),
              train: str = typer.Option("cityscapes-seq:data/synth/oracle", "--train",
                                        help="labelled target-train videos: the choice is made here"),
              data: str = typer.Option(DEFAULT_DATA, "--data", help="labelled target-val videos: checked once"),
              alphas: str = typer.Option("0.3,0.45,0.6,0.75,0.85", "--alphas", help="smoothing weights to try"),
              out: Path = OUT) -> None:
    """vsda-infer's smoothing mode and alpha chosen on target-train (best TC within 0.5 mIoU), checked on val."""
    try:
        values = tuple(float(a) for a in alphas.split(","))
        if not all(0 < a < 1 for a in values):
            raise ValueError
    except ValueError:
        raise typer.BadParameter(f"{alphas!r}: weights in (0, 1) like 0.3,0.85", param_hint="--alphas") from None
    opts = _options(model, data, "cpu", "256x512", out)
    _finish("smoothing", _suite("smoothing").run(opts, train, values), opts)


@app.command()
def data(workers: str = typer.Option("0,1,2", "--workers", help="DataLoader worker counts, one row each"),
         clips: int = typer.Option(24, "--clips", min=1, help="timed batches per row"),
         config: Path = typer.Option(Path("configs/viper2cityseq_deeplabv2.yaml"), "--config",
                                     help="the recipe: sizes, augmentation, model, batch"),
         peak_tflops: float = typer.Option(989.4, "--peak-tflops", min=1.0, help="GPU dense BF16 peak for the "
                                           "derived step rate (default: H100 SXM)"),
         utilisation: float = typer.Option(0.4, "--utilisation", min=0.01, max=1.0, help="share of the peak a "
                                           "training step reaches (derived step rate)"),
         source_augment: str = typer.Option("", "--source-augment", help="photometric augmentation of the source "
                                            "rows: none | weak | strong (default: the recipe's)"),
         results: Path = typer.Option(Path("benchmarks/results"), "--results", help="where the train suite's "
                                      "CUDA results are looked for (measured step rates)"),
         out: Path = OUT) -> None:
    """Clips/s of the training DataLoader at the recipe's sizes, and the workers one GPU needs."""
    try:
        counts = tuple(int(w) for w in workers.split(","))
        if min(counts) < 0:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(f"{workers!r}: expected counts like 0,1,2", param_hint="--workers") from None
    if source_augment not in ("", "none", "weak", "strong"):
        raise typer.BadParameter(f"{source_augment!r}: none, weak or strong", param_hint="--source-augment")
    if not config.is_file():
        raise typer.BadParameter(f"{config}: not found", param_hint="--config")
    opts = _options(DEFAULT_MODEL, DEFAULT_DATA, "cpu", "256x512", out)
    progress = lambda row: console.print(f"{row.name}: {row.values.get('clips_s', row.reason)} clips/s")  # noqa: E731
    result = _suite("data").run(counts, clips, config, results, peak_tflops, utilisation, source_augment,
                                on_row=progress)
    _finish("data", result, opts)


@app.command()
def rehearsal(root: Path = typer.Option(Path("runs/rehearsal"), "--root", help="where the full-size tree, runs, "
                                        "exports and the log go (about 3 GB)"),
              models: str = typer.Option("deeplabv2,ddrnet", "--models", help="deeplabv2 and/or ddrnet"),
              out: Path = OUT) -> None:
    """The real configs end to end at full resolution on CPU, a few iterations each: time, memory, disk per step."""
    suite = _suite("rehearsal")
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(suite.CONFIGS))
    if not names or unknown:
        raise typer.BadParameter(f"{models!r}: choose from {', '.join(suite.CONFIGS)}", param_hint="--models")
    opts = _options(DEFAULT_MODEL, DEFAULT_DATA, "cpu", "256x512", out)
    _finish("rehearsal", suite.run(root, names), opts)


@app.command()
def tables(check: bool = typer.Option(False, "--check", help="only say which documents are out of date (exit 1)")
           ) -> None:
    """Rewrite the results tables marked in README.md and docs/*.md from benchmarks/results JSON."""
    from benchmarks.tables import update

    stale = update(check)
    for doc in stale:
        console.print(f"{'out of date' if check else 'updated'}: {doc}")
    if check and stale:
        raise typer.Exit(1)


@app.command("compare")
def compare_cmd(a: Path = typer.Argument(..., help="baseline result JSON"),
                b: Path = typer.Argument(..., help="result JSON to compare with it")) -> None:
    """Print B / A for every number two runs of one suite share (differences within the spread marked ≈)."""
    ra, rb = load_result(a), load_result(b)
    try:
        ratios = compare(ra, rb)
    except OptionError as exc:
        raise SystemExit(f"error: {a}, {b}: {exc}") from None
    console.print(compare_table(ra, rb, ratios))


def main() -> None:
    os.environ.setdefault("VSDA_NO_PROGRESS", "1")
    app()


if __name__ == "__main__":
    main()
