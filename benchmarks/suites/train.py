"""``python -m benchmarks train``: iterations/s and peak memory of the source, VAT and VST steps.

A row (model, AMP, phase, crop) builds the config ``vsda-train`` runs (:func:`config_file`) with
data, model, AMP, crop and device overridden, draws ``warmup + iters`` batches of real synthetic
frames through the training data path (``phases.clip_stream``: dataset, load-time resize, flow,
``ClipTransform``),
then times only the steps (``source_step`` / ``vat_step`` with its discriminator update /
``vst_step``, and ``zero_grad``). Peak memory: the CUDA allocator's peaks over the steps, or on
CPU the peak RSS of the row's own fresh process.
"""

from __future__ import annotations

import gc
import math
import os
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.suite import (
    FAILED,
    INACCURATE,
    OK,
    Column,
    Row,
    SuiteOptions,
    SuiteResult,
    failed_row,
    latency_stats,
    new_result,
    parse_sizes,
)
from vsda_deploy.options import OptionError

try:  # the [train] extra; without it every row is a ❌ naming it
    import torch
    from torch import nn

    from vsda_deploy.data import build_dataset
    from vsda_train import engine, phases, steps
    from vsda_train import run as run_module
    from vsda_train.config import load_config
    from vsda_train.loop import to_device
    from vsda_train.models import model_names
except ImportError as _missing:
    MISSING: ImportError | None = _missing
else:
    MISSING = None

PHASES = ("source", "vat", "vst")
AMPS = ("none", "bf16", "fp16")
EDGE, R101 = "ddrnet23_slim", "deeplabv2_r101"
DEFAULT_SOURCE = "viper:data/synth/source"
REPO = Path(__file__).resolve().parents[2]
CPU_CROP = (128, 256)
CUDA_CROPS = ((720, 1280), (512, 1024))  # the peers' source / target resolutions
PHASE_COLOURS = {"source": "tab:blue", "vat": "tab:orange", "vst": "tab:green"}
FP16_CPU = "fp16 autocast with GradScaler needs CUDA"
COLUMNS = [
    Column("it_s", "it/s", "{:.2f}"), Column("ms_p50", "ms/it p50", "{:.0f}"), Column("ms_iqr", "IQR ms", "{:.0f}"),
    Column("frames_s", "frames/s", "{:.1f}"), Column("peak_mem_mb", "peak MiB", "{:.0f}"),
    Column("batch", "batch", "{}"), Column("crop", "crop", "{}"), Column("iters", "timed", "{}"),
]


# --- what a run measures ----------------------------------------------------------------------

@dataclass(frozen=True)
class ModelChoice:
    """A segmenter by name, with an optional ``width`` (``ddrnet23_slim:16``)."""

    name: str
    width: int | None = None

    @property
    def label(self) -> str:
        return self.name + (f" w{self.width}" if self.width else "")


@dataclass(frozen=True)
class Combo:
    """One model at one AMP setting, timed for ``iters`` steps after ``warmup``."""

    model: ModelChoice
    amp: str
    iters: int
    warmup: int


def parse_models(text: str) -> tuple[ModelChoice, ...]:
    """Return the models of ``name[:width],...``; OptionError naming a bad entry."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, width = part.partition(":")
        if width and not (width.isdigit() and int(width) > 0):
            raise OptionError(f"--models: {part!r}: the width after ':' must be a positive integer")
        out.append(ModelChoice(name, int(width) if width else None))
    return tuple(out)


def default_plan(device: str, models: str = "", amp: str = "", sizes: str = "", iters: int = 0,
                 warmup: int = 0) -> tuple[list[Combo], list[tuple[tuple[int, int], tuple[int, int]]]]:
    """Return ``(combos, [(source crop, target crop)])``: the options given, empty ones (or 0) per device.

    CPU: the demo (``ddrnet23_slim:16``), the edge model (``:32``) and ``deeplabv2_r101`` at 128x256;
    AMP none, plus bf16 for the edge models; 10 steps after 2 (R101: 3 after 1). CUDA: R101 and
    the edge model at the peers' 720x1280 source / 512x1024 target crops; AMP none, bf16, fp16;
    20 steps after 5 warm-up steps (lazy CUDA init, the allocator and fp16's GradScaler settle).
    """
    cuda = device.startswith("cuda")
    chosen = parse_models(models) if models.strip() else (
        (ModelChoice(R101), ModelChoice(EDGE, 32)) if cuda
        else (ModelChoice(EDGE, 16), ModelChoice(EDGE, 32), ModelChoice(R101)))
    amps = tuple(a.strip() for a in amp.split(",") if a.strip())
    if set(amps) - set(AMPS):
        raise OptionError(f"--amp: {', '.join(sorted(set(amps) - set(AMPS)))}: choose from {', '.join(AMPS)}")
    combos = []
    for m in chosen:
        heavy = m.name == R101 and not m.width
        for a in amps or (AMPS if cuda else ("none",) if heavy else ("none", "bf16")):
            combos.append(Combo(m, a, iters or (20 if cuda else 3 if heavy else 10),
                                warmup or (5 if cuda else 1 if heavy else 2)))
    crops = [(s, s) for s in parse_sizes(sizes)] if sizes.strip() else [CUDA_CROPS if cuda else (CPU_CROP, CPU_CROP)]
    return combos, crops


@dataclass(frozen=True)
class RowJob:
    """Everything one row needs (picklable: on CPU it travels to the row's own process)."""

    combo: Combo
    phase: str
    source_size: tuple[int, int]
    target_size: tuple[int, int]
    device: str
    source: str
    target: str
    threads: int = 0

    @property
    def crop(self) -> str:
        src, tgt = (f"{h}x{w}" for h, w in (self.source_size, self.target_size))
        return {"source": src, "vst": tgt}.get(self.phase, src if src == tgt else f"{src}+{tgt}")

    @property
    def name(self) -> str:
        return f"{self.combo.model.label} · {self.phase} · {self.combo.amp} · {self.crop}"


# --- one row ----------------------------------------------------------------------------------

def config_file(model: str, device: str) -> Path:
    """Return the YAML whose recipe a row of ``model`` measures: the CPU demo or the peers' recipe."""
    if model.startswith("deeplabv2"):
        return REPO / "configs" / "viper2cityvps_deeplabv2.yaml"
    return REPO / "configs" / ("viper2cityvps_ddrnet.yaml" if device.startswith("cuda") else "synth_edge.yaml")


def row_config(job: RowJob) -> Any:
    """Return the TrainConfig of a row: its YAML with data, model, AMP, crops and device overridden.

    The rescale range is multiplied where needed so that even its smallest rescale of the (small
    synthetic) frames covers the crop: crops hold real pixels, not padding.
    """
    m = job.combo.model
    sets = [f"data.source={job.source}", f"data.target={job.target}", "data.workers=0", "data.flow_cache=none",
            f"data.source_size={list(job.source_size)}", f"data.target_size={list(job.target_size)}",
            f"model.name={m.name}", f"run.device={job.device}", f"run.amp={job.combo.amp}", "run.name=bench-train"]
    cfg = load_config(config_file(m.name, job.device), sets + ([f"run.threads={job.threads}"] if job.threads else []))
    need = 1.0
    for (ch, cw), spec, resize in ((job.source_size, job.source, cfg.data.source_resize),
                                   (job.target_size, job.target, cfg.data.target_resize)):
        fh, fw = resize or build_dataset(spec, "train", cfg.data.k, labels=False).frames(0)[0].shape[:2]
        need = max(need, ch / fh, cw / fw)
    lo, hi = cfg.data.scale_range
    grow = max(1.0, need / lo)
    kwargs = {**cfg.model.kwargs, **({"width": m.width} if m.width else {})}
    return replace(cfg, model=replace(cfg.model, kwargs=kwargs),
                   data=replace(cfg.data, scale_range=(lo * grow, hi * grow)))


def hold_weights(run: Any, frames: Any) -> None:
    """Keep a fresh model's values realistic without changing what a step computes.

    Learning rates become 0: on random weights the recipes' rates diverge (R101: loss 4 -> 1e9 in
    three steps) and non-finite values time another computation (fp16's GradScaler skips the
    update), while SGD / Adam still apply ``lr * update`` to every parameter. Frozen BN (the R101
    recipe) expects ImageNet statistics: they are set from one pass over ``frames``.
    """
    for opt in [run.optimizer, *run.d_opts.values()]:
        for group in opt.param_groups:
            group["lr"] = 0.0
    if run.cfg.model.bn not in ("frozen_stats", "frozen"):
        return
    model = engine.unwrap(run.model).train()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the one pass
    with torch.no_grad():
        model(to_device({"frame": frames, "prev": frames}, run)["frame"])
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum


def fixed_pseudo_labels(run: Any, frames: Any) -> Any:
    """Return the model's argmax on ``frames`` (CPU long tensor): VST's stand-in pseudo labels.

    A step's speed does not depend on what its labels say, so the benchmark skips the real
    pseudo-label pass (confidence ranking and temporal filtering over the whole target set).
    """
    x = to_device({"frame": frames, "prev": frames}, run)["frame"]
    with torch.no_grad():
        return engine.unwrap(run.model).eval()(x).argmax(1).cpu()


def collect_batches(run: Any, phase: str, n: int) -> list[tuple[dict, ...]]:
    """Return ``n`` step inputs drawn as the phase's training loop draws them (flow included)."""
    cfg, stream = run.cfg, phases.clip_stream
    if phase == "source":
        streams = [stream(run, "source", "none", True, False, 0)]
    elif phase == "vat":
        flow, bs = cfg.vat.video_disc, cfg.vat.batch_size
        streams = [stream(run, "source", cfg.vat.source_augment, True, flow, 0, batch_size=bs, with_prev=True),
                   stream(run, "target", "none", False, flow, 1, batch_size=bs, with_prev=True)]
    else:
        streams = [stream(run, "target", cfg.vst.augment, False, False, 2)]
    batches = [tuple(next(s) for s in streams) for _ in range(n)]
    hold_weights(run, batches[0][-1]["frame"])
    if phase == "vat" and not cfg.vat.video_disc:  # image discriminator only: training feeds zero flow
        zero = lambda b: {**b, "flow": torch.zeros(b["frame"].shape[0], 2, *b["frame"].shape[-2:])}  # noqa: E731
        batches = [tuple(zero(b) for b in bs) for bs in batches]
    if phase == "vst":
        batches = [({**b, "label": fixed_pseudo_labels(run, b["frame"])},) for (b,) in batches]
    return batches


def memory_probe(device: str) -> tuple[Callable[[], None], Callable[[], dict[str, float]]]:
    """Return ``(reset, read)`` of peak memory in MiB: the CUDA allocator's peaks, or this process's peak RSS."""
    if device.startswith("cuda"):
        dev = torch.device(device)

        def reset() -> None:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)

        return reset, lambda: {"peak_mem_mb": torch.cuda.max_memory_allocated(dev) / 2**20,
                               "reserved_mb": torch.cuda.max_memory_reserved(dev) / 2**20}
    unit = 2**20 if sys.platform == "darwin" else 2**10  # ru_maxrss: bytes on macOS, KiB on Linux
    return (lambda: None), lambda: {"peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / unit}


def time_steps(run: Any, phase: str, batches: list[tuple[dict, ...]], warmup: int,
               sync: Callable[[], Any]) -> tuple[list[float], bool]:
    """Return the ms of each step after ``warmup`` and whether every loss stayed finite."""
    step = {"source": steps.source_step, "vat": steps.vat_step, "vst": steps.vst_step}[phase]
    times, finite = [], True
    for i, batch in enumerate(batches):
        inputs = [to_device(b, run) for b in batch]
        run_module.set_train_mode(run)
        sync()  # the copy to the device is done before the clock starts
        t0 = time.perf_counter()
        logs = step(run, *inputs)
        run.optimizer.zero_grad(set_to_none=True)
        sync()
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - t0))
        finite = finite and all(math.isfinite(v) for v in logs.values())
        del inputs
    return times, finite


def measure(job: RowJob) -> dict[str, Any]:
    """Return one row's step times and peak memory, or ``status: failed`` with a one-line reason."""
    batch = None
    try:
        cfg = row_config(job)
        batch = (cfg.vat.batch_size or cfg.data.batch_size) if job.phase == "vat" else cfg.data.batch_size
        run = run_module.build_run(cfg, job.phase)
        batches = collect_batches(run, job.phase, job.combo.warmup + job.combo.iters)
        reset, read = memory_probe(str(run.device))
        sync = (lambda: torch.cuda.synchronize(run.device)) if run.device.type == "cuda" else (lambda: None)
        reset()
        times, finite = time_steps(run, job.phase, batches, job.combo.warmup, sync)
        return {"status": OK, "times": times, "finite": finite, "batch": batch, **read()}
    except (torch.cuda.OutOfMemoryError, MemoryError):
        return {"status": FAILED, "reason": f"out of memory at batch {batch}, crop {job.crop}", "batch": batch}
    except Exception as exc:  # any failure is this row's ❌; the suite goes on
        return {"status": FAILED, "reason": failed_row(job.name, exc).reason, "batch": batch}


def measure_isolated(job: RowJob) -> dict[str, Any]:
    """Return :func:`measure` of ``job`` run in a fresh Python process (its peak RSS is the row's).

    A ``python -c`` child rather than multiprocessing: it never re-imports the caller's main
    script, and a child that dies leaves its last stderr line as the row's reason.
    """
    with tempfile.TemporaryDirectory(prefix="vsda-train-bench-") as tmp:
        job_file, out_file = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job_file.write_bytes(pickle.dumps(job))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
        code = "import sys; from benchmarks.suites.train import child_main; child_main(*sys.argv[1:])"
        proc = subprocess.run([sys.executable, "-c", code, str(job_file), str(out_file)], env=env,
                              capture_output=True, text=True)
        if out_file.exists():
            return pickle.loads(out_file.read_bytes())
    if proc.returncode == -signal.SIGKILL:
        return {"status": FAILED, "reason": "the row's process was killed (out of memory?)"}
    last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return {"status": FAILED, "reason": f"the row's process failed: {last}"[:200]}


def child_main(job_file: str, out_file: str) -> None:
    """Measure the pickled job of ``job_file``; pickle the result to ``out_file`` (the CPU row's process)."""
    Path(out_file).write_bytes(pickle.dumps(measure(pickle.loads(Path(job_file).read_bytes()))))


def to_row(job: RowJob, m: dict[str, Any]) -> Row:
    """Return the table row of a measurement: ✅ finite losses, ❎ a non-finite loss, ❌ failed."""
    values: dict[str, Any] = {"batch": m.get("batch"), "crop": job.crop}
    if m["status"] == FAILED:
        return Row(job.name, FAILED, m["reason"], values)
    stats = latency_stats(m["times"])
    frames = 4 * m["batch"] if job.phase == "vat" else m["batch"]  # VAT: frames t, t-k of both domains
    values.update(it_s=stats["fps"], ms_p50=stats["p50"], ms_iqr=stats["iqr"], iters=stats["n"],
                  frames_s=frames * stats["fps"], peak_mem_mb=m["peak_mem_mb"])
    values.update({"reserved_mb": m["reserved_mb"]} if "reserved_mb" in m else {})
    return Row(job.name, OK if m["finite"] else INACCURATE, "" if m["finite"] else "loss is not finite", values)


def measure_row(job: RowJob) -> Row:
    """Return the row of ``job``: fp16 on CPU refused, CPU rows in their own process, CUDA rows here."""
    if MISSING is not None:
        return failed_row(job.name, MISSING)
    if not job.device.startswith("cuda"):
        if job.combo.amp == "fp16":
            return Row(job.name, FAILED, FP16_CPU, {"crop": job.crop})
        return to_row(job, measure_isolated(job))
    row = to_row(job, measure(job))
    gc.collect()  # the row's model, optimiser and batches go before the next row's peak is taken
    torch.cuda.empty_cache()
    return row


# --- the suite --------------------------------------------------------------------------------

def require_data(*specs: str) -> None:
    """SystemExit naming the first dataset spec whose ``train`` split is missing."""
    for spec in specs:
        root = Path(spec.partition(":")[2] or spec)
        if not (root / "train").is_dir():
            raise SystemExit(f"error: {spec}: {root / 'train'} not found (run `make demo` to generate the "
                             "synthetic benchmark the train suite draws its frames from)")


def notes(combos: list[Combo], device: str) -> list[str]:
    """Return what a reader needs to read the table right."""
    warm = sorted({(c.iters, c.warmup) for c in combos})
    out = [f"ms/it: median of {', '.join(f'{n} steps after {w} warm-up' for n, w in warm)}; a step is the phase's "
           "step function (VAT includes the discriminator update) and zero_grad, on batches drawn beforehand: "
           "data loading, optical flow and the copy to the device are not timed.",
           "frames/s counts frames segmented: VAT 2 frames x 2 domains x batch per step, source and VST batch.",
           "Models start from random weights and every optimiser runs at learning rate 0 (same computation, "
           "weights that stay finite); frozen-BN configs (R101) get BN statistics from one pass over real frames; "
           "VST's pseudo labels are the fresh model's argmax. A step's speed does not depend on these values.",
           "Frames are the synthetic benchmark's, rescaled by ClipTransform so that the crop holds real pixels."]
    if device.startswith("cuda"):
        return [*out, "peak MiB: torch.cuda.max_memory_allocated over the row's steps; reserved MiB: "
                      "max_memory_reserved (what the caching allocator held)."]
    out.append("peak MiB on CPU is the whole process's peak RSS (a fresh process per row: Python, torch, "
               "the dataset and the pre-drawn batches included), not the training step's alone.")
    if any(c.model.name == R101 and not c.model.width for c in combos):
        out.append("deeplabv2_r101 on CPU is timed over few steps (a VAT step takes seconds): its spread is rough.")
    return out


def run(opts: SuiteOptions, models: str = "", amp: str = "", sizes: str = "", iters: int = 0,
        source: str = DEFAULT_SOURCE, warmup: int = 0) -> SuiteResult:
    """Return the train suite's result: one row per crop, model, AMP setting and phase."""
    try:
        combos, crops = default_plan(opts.device, models, amp, sizes, iters, warmup)
    except OptionError as exc:
        raise SystemExit(f"error: {exc}") from None
    if MISSING is None and (unknown := sorted({c.model.name for c in combos} - set(model_names()))):
        raise SystemExit(f"error: --models: {', '.join(unknown)} unknown; choose from {', '.join(model_names())}")
    require_data(source, opts.data)
    settings = {"device": opts.device, "models": sorted({c.model.label for c in combos}),
                "amp": sorted({c.amp for c in combos}), "crops": [f"{s[0]}x{s[1]}/{t[0]}x{t[1]}" for s, t in crops],
                "configs": sorted({config_file(c.model.name, opts.device).name for c in combos}),
                "source": source, "target": opts.data, "threads": opts.threads or "default"}
    columns = COLUMNS + ([Column("reserved_mb", "reserved MiB", "{:.0f}")] if opts.device.startswith("cuda") else [])
    result = new_result("train", columns, settings)
    result.rows = [measure_row(RowJob(c, phase, src, tgt, opts.device, source, opts.data, opts.threads))
                   for src, tgt in crops for c in combos for phase in PHASES]
    result.notes = notes(combos, opts.device)
    result.extra["name_header"] = "Model · phase · AMP · crop"
    return result


def plot(result: SuiteResult, path: Path) -> Path | None:
    """Write horizontal bars of iterations/s per ✅ row, coloured by phase, peak memory at each bar's end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = [r for r in result.rows if r.status == OK and r.values.get("it_s")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.32 * len(rows)))
    speeds = [r.values["it_s"] for r in rows]
    bars = ax.barh(range(len(rows)), speeds, color=[PHASE_COLOURS.get(r.name.split(" · ")[1], "grey") for r in rows])
    ax.bar_label(bars, [f"{r.values['it_s']:.2f} it/s · {r.values['peak_mem_mb']:.0f} MiB" for r in rows],
                 fontsize=7, padding=3)
    ax.set_yticks(range(len(rows)), [r.name for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(min(speeds) / 1.5, max(speeds) * 4)
    memory = "peak CUDA memory" if str(result.settings.get("device", "")).startswith("cuda") else "peak process RSS"
    ax.set_xlabel(f"training iterations / s (log scale) · label: it/s · {memory}")
    ax.legend(handles=[Patch(color=c, label=p) for p, c in PHASE_COLOURS.items()], fontsize=7, loc="lower right")
    ax.set_title(f"train steps · {result.machine.get('summary', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
