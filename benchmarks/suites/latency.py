"""The ``latency`` suite: one model as PyTorch eager and as ONNX Runtime FP32 / FP16 / INT8 on this CPU.

    python -m benchmarks latency [--model CKPT | --widths 16,32] [--sizes 256x512,512x1024] [--runs 50]

Every variant runs the same normalised real frame (the first val frame of ``--data``; without data a
small synthetic benchmark is generated in a temporary folder), one frame at a time, ``--runs`` timed runs
after ``--warmup``, in 5 round-robin blocks (every variant, then every variant again...) so the ratios
are measured side by side; the median is reported. ONNX Runtime: CPU provider, every graph
optimisation, one intra-op thread per core; PyTorch: ``inference_mode``, the same thread count.
INT8 rows: ``int8`` is the TensorRT-ready file (symmetric INT8 activations); ``int8-cpu`` is
``--int8-target cpu`` (UINT8 activations, ONNX Runtime's recommendation for x86, where ReLU then fuses
into QLinearConv). On x86, ONNX Runtime fuses only part of the symmetric file's Q/DQ convolutions.
Without a checkpoint the models are randomly initialised: latency does not depend on the weights' values.

Each row also gives the model's convolution GFLOP and a *ceiling* for FP32 ORT vs PyTorch: PyTorch's time
over the time the convolutions alone would take at ONNX Runtime's best FP32 convolution rate on this CPU
(one 3x3 convolution, 256 to 256 channels on 64x64). When ONNX Runtime's convolutions already run at
that rate, no FP32 graph optimisation can push the ratio past the ceiling.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.suite import Column, Row, SuiteOptions, SuiteResult, new_result, time_calls

VARIANTS = ("pytorch", "ort-fp32", "ort-fp16", "ort-int8", "ort-int8-cpu")
BLOCKS = 5  # round-robin timing blocks per variant
SETTLE = 2  # untimed calls at the start of each block


def ort_runner(path: Path, threads: int) -> Callable[[np.ndarray], Any]:
    """Return ``run(x)`` of a CPU ONNX Runtime session set up for latency."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})


def conv_gflop(model: Any, size: tuple[int, int]) -> float:
    """Return the GFLOP (2 x multiply-adds) of ``model``'s convolutions on one (1, 3, H, W) image."""
    import torch
    from torch import nn

    macs = [0]

    def count(conv: nn.Conv2d, _inputs: Any, out: torch.Tensor) -> None:
        kh, kw = conv.kernel_size
        macs[0] += out.numel() * conv.in_channels // conv.groups * kh * kw

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, *size))
    finally:
        for hook in hooks:
            hook.remove()
    return 2 * macs[0] / 1e9


def conv_peak_gflops(threads: int, channels: int = 256, size: int = 64, runs: int = 10) -> float:
    """Return ONNX Runtime's FP32 rate (GFLOP/s) on one large 3x3 convolution: its kernels' ceiling on this CPU."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * 0.02
    shape = [1, channels, size, size]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], [numpy_helper.from_array(weight, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = rng.standard_normal(shape, dtype=np.float32)
    ms = statistics.median(time_calls(lambda: session.run(None, {"x": x}), runs, 2))
    return 2 * channels**2 * 9 * size**2 / (ms * 1e6)


def _model(checkpoint: str | None, name: str, width: int, work: Path) -> tuple[Any, Path]:
    """Return ``(eval model, checkpoint path)``: the given checkpoint, or a seeded random one."""
    import torch
    from torch import nn
    from vsda_export.onnx_export import load_for_export

    from vsda_train.checkpoint import save_checkpoint
    from vsda_train.models import create_model

    if checkpoint:
        return load_for_export(checkpoint)[0], Path(checkpoint)
    torch.manual_seed(0)
    model = create_model(name, 15, width=width)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():  # trained-like BN statistics: realistic activation ranges for calibration
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    path = save_checkpoint(work / f"{name}_w{width}.pt", {"model": model.state_dict(), "model_config": model.config,
                                                          "label_space": "viper15"})
    return model.eval(), path


def _data(spec: str, work: Path) -> str:
    """Return a Cityscapes-VPS spec with train and val frames: ``spec`` when it exists, else a generated one."""
    kind, _, root = spec.partition(":")
    if kind == "cityscapes-vps" and (Path(root) / "val").is_dir():
        return spec
    from vsda_train.synth.config import SynthConfig
    from vsda_train.synth.generate import generate

    generate(work / "synth", SynthConfig(source_clips=1, source_val_clips=0, target_train_clips=2,
                                         target_val_clips=1, frames=10))
    return f"cityscapes-vps:{work / 'synth' / 'target'}"


def _export_all(model: Any, ckpt: Path, size: tuple[int, int], dynamic: bool, data: str, calib_frames: int,
                work: Path) -> dict[str, Path]:
    from vsda_export.onnx_export import export_fp32, model_meta
    from vsda_export.precision import FrameCalibrationReader, convert_fp16, open_frames, quantize_int8

    meta = model_meta(model, {"label_space": "viper15"}, ckpt, size, dynamic)
    stem = f"{meta.model_name}_w{meta.model_config.get('width')}_{size[0]}x{size[1]}"
    fp32 = export_fp32(model, work / f"{stem}.onnx", meta)
    frames = open_frames(data, split="train")
    reader = lambda: FrameCalibrationReader(frames, calib_frames, size, meta.normalization)  # noqa: E731
    return {"fp32": fp32, "fp16": convert_fp16(fp32, work / f"{stem}_fp16.onnx"),
            "int8": quantize_int8(fp32, work / f"{stem}_int8.onnx", reader()),
            "int8-cpu": quantize_int8(fp32, work / f"{stem}_int8_cpu.onnx", reader(), target="cpu")}


def bench_one(model: Any, files: dict[str, Path], x: np.ndarray, threads: int, runs: int,
              warmup: int) -> dict[str, list[float]]:
    """Return the latencies (ms) of every variant on input ``x``."""
    import torch

    torch.set_num_threads(threads)
    xt = torch.from_numpy(x)

    def eager() -> None:
        with torch.inference_mode():
            model(xt)

    runners = {"pytorch": eager}
    for variant in VARIANTS[1:]:
        run = ort_runner(files[variant.removeprefix("ort-")], threads)
        runners[variant] = lambda run=run: run(x)
    return interleaved(runners, runs, warmup)


def interleaved(runners: dict[str, Callable[[], Any]], runs: int, warmup: int,
                blocks: int = BLOCKS, settle: int = SETTLE) -> dict[str, list[float]]:
    """Return ``runs`` latencies (ms) per runner, timed in ``blocks`` round-robin blocks.

    Every runner gets its warm-up, then each block times every runner in turn, so a slow spell of the
    machine (another process, frequency changes) lands on all variants alike and leaves the ratios intact.
    Each block starts with ``settle`` untimed calls: the thread pool of the runtime that ran before
    (PyTorch's OpenMP, ONNX Runtime's) still spins for a moment and would steal a core.
    """
    for fn in runners.values():
        time_calls(fn, 0, warmup)
    times: dict[str, list[float]] = {name: [] for name in runners}
    per_block = [runs // blocks + (b < runs % blocks) for b in range(blocks)]
    for n in per_block:
        for name, fn in runners.items():
            times[name] += time_calls(fn, n, settle)
    return times


def _summary(times: dict[str, list[float]], gflop: float, peak: float) -> dict[str, Any]:
    """Return medians, p90s, ratios, GFLOP/s per variant and the FP32-vs-PyTorch ceiling at ``peak`` GFLOP/s."""
    med = {k: statistics.median(v) for k, v in times.items()}
    p90 = {k: float(np.percentile(v, 90)) for k, v in times.items()}
    ratios = {
        "ort_fp32_vs_pytorch": med["pytorch"] / med["ort-fp32"],
        "int8_vs_ort_fp32": med["ort-fp32"] / med["ort-int8"],
        "int8_cpu_vs_ort_fp32": med["ort-fp32"] / med["ort-int8-cpu"],
        "fp16_vs_ort_fp32": med["ort-fp32"] / med["ort-fp16"],
    }
    return {"median_ms": med, "p90_ms": p90, "speedup": ratios, "conv_gflop": gflop,
            "gflops": {k: gflop / v * 1e3 for k, v in med.items()},
            "ort_fp32_vs_pytorch_ceiling": med["pytorch"] / (gflop / peak * 1e3)}


COLUMNS = [Column("conv_gflop", "GFLOP"), *(Column(f"{v}_ms", f"{v} ms") for v in VARIANTS),
           Column("ort_fp32_vs_pytorch", "ORT FP32 / PyTorch", "{:.2f}x"),
           Column("ort_fp32_vs_pytorch_ceiling", "its ceiling", "{:.2f}x"),
           Column("int8_vs_ort_fp32", "INT8 / FP32", "{:.2f}x"), Column("int8_cpu_vs_ort_fp32", "INT8-cpu / FP32",
                                                                      "{:.2f}x")]


def row_values(summary: dict[str, Any]) -> dict[str, float]:
    """Return one table row's values from ``_summary``."""
    return {"conv_gflop": summary["conv_gflop"], **{f"{v}_ms": summary["median_ms"][v] for v in VARIANTS},
            **{f"{v}_p90_ms": summary["p90_ms"][v] for v in VARIANTS}, **summary["speedup"],
            "ort_fp32_vs_pytorch_ceiling": summary["ort_fp32_vs_pytorch_ceiling"]}


def run(opts: SuiteOptions, checkpoint: str | None, model_name: str, widths: tuple[int, ...], dynamic: bool = True,
        calib_frames: int = 32, on_row: Callable[[Row], None] | None = None) -> SuiteResult:
    """Time every variant of each model (``checkpoint``, or ``model_name`` at each width) at ``opts.sizes``."""
    from vsda_export.precision import open_frames

    from vsda_deploy.pipeline import model_input
    from vsda_deploy.preprocess import IMAGENET

    threads = opts.threads or os.cpu_count() or 1
    load_before = os.getloadavg()
    peak = conv_peak_gflops(threads)
    result = new_result("latency", COLUMNS, {**opts.settings(), "dynamic": dynamic, "threads": threads})
    with tempfile.TemporaryDirectory(prefix="vsda-latency-") as tmp:
        work = Path(tmp)
        spec = _data(opts.data, work)
        frame = next(open_frames(spec, split="val").read([0]))
        for name, width in [(model_name, 0)] if checkpoint else [(model_name, w) for w in widths]:
            model, ckpt = _model(checkpoint, name, width, work)
            label = f"{model.config['name']} w{model.config.get('width')}"
            for size in opts.sizes:
                files = _export_all(model, ckpt, size, dynamic, spec, calib_frames, work)
                times = bench_one(model, files, model_input(frame, size, IMAGENET), threads, opts.runs, opts.warmup)
                row = Row(f"{label} · {size[0]}x{size[1]}",
                          values=row_values(_summary(times, conv_gflop(model, size), peak)))
                result.rows.append(row)
                if on_row is not None:
                    on_row(row)
    result.extra.update({"conv_peak_gflops": peak, "frame": spec, "load_before": list(load_before),
                         "load_after": list(os.getloadavg())})
    result.notes.append(f"ONNX Runtime FP32 3x3 convolution, 256 channels, {threads} threads: {peak:.0f} GFLOP/s "
                        f"(the ceiling's rate); median of {opts.runs} runs in {BLOCKS} round-robin blocks")
    return result
