"""``python -m benchmarks data``: can this machine's CPUs feed the GPUs? The training DataLoader at the recipe's sizes.

Rows are the four clip streams of the recipe (``configs/viper2cityseq_deeplabv2.yaml``), each with
0, 1, 2 DataLoader workers (``--workers``), through the training path of ``phases.clip_stream``
(``domain_clips`` -> ``ClipTransform`` -> ``engine.TrainClips`` -> ``engine.infinite_loader``):

* source, VAT: VIPER 1920x1080 JPEG frames resized to 720x1280, labels nearest-resized (ego vehicle
  removed), cached flow, ``vat.source_augment``;
* source, source-only phase: the same without flow, ``source.augment``;
* target, VAT: Cityscapes 2048x1024 PNG frames resized to 512x1024, cached flow;
* target, VST: the same without flow, with a pseudo-label PNG per clip and ``vst.augment``.

The frames are a small tree written by :mod:`benchmarks.suites.data_tree` (the real names and
layouts, rendered by the synthetic generator with a photographic look; read from the page cache,
so disk reads are not timed). The flow cache is filled with ``vsda-train flow``'s code first: cached
reads are what training does. A row's clips/s is ``--clips`` batches (batch 1, as the recipe) over
the wall time after ``2 x max(workers, 1)`` warm-up batches.

Workers needed to feed one GPU = ceil(GPU step rate x clips per step / clips/s per worker), the
step rate of the row's phase (VAT, source-only, VST) taken from the ``train`` suite's CUDA rows of
the recipe's model, AMP and crops in ``--results`` (``measured``) or, without one, from the
model's FLOPs (``derived``): forward FLOPs of the step's frames at the crop sizes (counted by
``torch.utils.flop_counter`` on the meta device) x 3 for forward + backward, at ``--utilisation``
of ``--peak-tflops`` (default: an H100 SXM's dense BF16 peak, 989 TFLOP/s, at 40 %).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.suite import Column, Row, SuiteResult, failed_row, new_result
from benchmarks.suites import data_tree

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "viper2cityseq_deeplabv2.yaml"
H100_BF16_TFLOPS = 989.4  # H100 SXM dense BF16 tensor-core peak (1,979 with sparsity)
COLUMNS = [
    Column("workers", "workers", "{}"), Column("clips_s", "clips/s", "{:.2f}"), Column("ms_clip", "ms/clip", "{:.0f}"),
    Column("per_worker", "clips/s per worker", "{:.2f}"), Column("step_s", "GPU steps/s", "{:.2f}"),
    Column("rate_from", "step rate", "{}"), Column("need_s", "GPU needs clips/s", "{:.2f}"),
    Column("workers_needed", "workers / GPU", "{}"), Column("load1", "load 1 min", "{:.2f}"),
]


@dataclass(frozen=True)
class Stream:
    """One of the recipe's clip streams: which domain, phase, flow, labels and photometric augmentation."""

    domain: str  # source | target
    phase: str  # vat | source | vst: whose step rate the stream must keep up with
    flow: bool
    augment: str

    @property
    def name(self) -> str:
        flow = "flow" if self.flow else "no flow"
        return f"{self.domain} · {self.phase} ({flow}) · aug {self.augment}"


@dataclass(frozen=True)
class StepRate:
    """Steps per second of one phase on one GPU, and where the number comes from."""

    steps_s: float
    source: str  # measured | derived
    detail: str


@dataclass(frozen=True)
class Sizes:
    """Stored frame sizes of the tree (H, W); the resize and crops come from the config."""

    source: tuple[int, int] = data_tree.SOURCE_SIZE
    target: tuple[int, int] = data_tree.TARGET_SIZE


def recipe_streams(cfg: Any, source_augment: str = "") -> list[Stream]:
    """Return the recipe's four streams, augmentation from the config (``source_augment`` overrides the source's)."""
    return [Stream("source", "vat", True, source_augment or cfg.vat.source_augment),
            Stream("source", "source", False, source_augment or cfg.source.augment),
            Stream("target", "vat", True, "none"),
            Stream("target", "vst", False, cfg.vst.augment)]


# --- the GPU side -----------------------------------------------------------------------------


def clips_per_step(cfg: Any, phase: str) -> int:
    """Return the clips of one domain a step of ``phase`` consumes (its batch)."""
    return (cfg.vat.batch_size or cfg.data.batch_size) if phase == "vat" else cfg.data.batch_size


def step_flops(cfg: Any) -> dict[str, float]:
    """Return FLOPs per step of each phase: forward FLOPs of the step's frames x 3 (forward + backward).

    VAT segments frames t and t-k of a source and a target clip (gradients through all four);
    the source-only and VST steps segment frame t of one clip. Discriminators are left out (their
    input is the segmenter's output at 1/8 of the resolution: a few percent).
    """
    fwd = {d: forward_flops(cfg, size) for d, size in (("source", cfg.data.source_size),
                                                      ("target", cfg.data.target_size))}
    batch = {p: clips_per_step(cfg, p) for p in ("vat", "source", "vst")}
    return {"vat": 3 * 2 * (fwd["source"] + fwd["target"]) * batch["vat"],
            "source": 3 * fwd["source"] * batch["source"], "vst": 3 * fwd["target"] * batch["vst"]}


def forward_flops(cfg: Any, size: tuple[int, int]) -> float:
    """Return the FLOPs of one forward pass of the config's model on one (3, H, W) frame (meta device)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vsda_deploy.labels import get_label_space
    from vsda_train.models import create_model

    with torch.device("meta"):
        model = create_model(cfg.model.name, get_label_space(cfg.data.label_space).num_classes, **cfg.model.kwargs)
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, *size))
    return float(counter.get_total_flops())


def derived_rates(flops: dict[str, float], peak_tflops: float, utilisation: float) -> dict[str, StepRate]:
    """Return each phase's step rate at ``utilisation`` of ``peak_tflops``."""
    achieved = peak_tflops * 1e12 * utilisation
    return {p: StepRate(achieved / f, "derived", f"{f / 1e12:.2f} TFLOP a step at {100 * utilisation:.0f} % of "
                        f"{peak_tflops:g} TFLOP/s") for p, f in flops.items()}


def train_row_name(cfg: Any, phase: str) -> str:
    """Return the ``train`` suite's row name of the recipe's model, AMP and crops for ``phase``."""
    src, tgt = (f"{h}x{w}" for h, w in (cfg.data.source_size, cfg.data.target_size))
    crop = {"source": src, "vst": tgt}.get(phase, src if src == tgt else f"{src}+{tgt}")
    return f"{cfg.model.name} · {phase} · {cfg.run.amp} · {crop}"


def measured_rates(cfg: Any, results: Path) -> dict[str, StepRate]:
    """Return the step rates of the newest ``train-*.json`` CUDA rows of the recipe (phases without one left out)."""
    found: dict[str, tuple[str, StepRate]] = {}
    for path in sorted(results.glob("train-*.json")):
        data = json.loads(path.read_text())
        gpu = (data.get("machine") or {}).get("gpu")
        if not gpu or not str(data.get("settings", {}).get("device", "")).startswith("cuda"):
            continue
        created, rows = data.get("created", ""), {r["name"]: r for r in data.get("rows", []) if r.get("status") == "ok"}
        for phase in ("vat", "source", "vst"):
            row = rows.get(train_row_name(cfg, phase))
            if row and (phase not in found or created > found[phase][0]):
                found[phase] = (created, StepRate(row["values"]["it_s"], "measured", f"{path.name} ({gpu['name']})"))
    return {p: rate for p, (_, rate) in found.items()}


def workers_needed(need_clips_s: float, per_worker_clips_s: float) -> int:
    """Return the DataLoader workers that deliver ``need_clips_s`` at ``per_worker_clips_s`` each."""
    return math.ceil(need_clips_s / per_worker_clips_s - 1e-9)


# --- the CPU side -----------------------------------------------------------------------------


def suite_config(tree: Path, flow_cache: Path, config: Path = RECIPE, sets: tuple[str, ...] = ()) -> Any:
    """Return the recipe's config reading the tree: every target frame, the flow cache in ``flow_cache``."""
    from vsda_train.config import load_config

    specs = [f"data.source=viper:{tree / 'viper'}", f"data.target=cityscapes-seq:{tree / 'cityscapes'}"]
    return load_config(config, [*specs, "data.target_frames=all", f"data.flow_cache={flow_cache}",
                                "data.flow_source=dis", *sets])


def write_pseudo_labels(cfg: Any, folder: Path) -> Path:
    """Write a pseudo-label PNG at the training size for every target clip (its snippet's labels, resized)."""
    import cv2

    from vsda_deploy.preprocess import resize_label
    from vsda_train.clips import domain_clips

    clips = domain_clips(cfg, "oracle", True, False, spec=cfg.data.target)
    labels = {rec.video: clips.clips.load_label(rec)[0] for rec in clips.records}  # a video is a snippet
    folder.mkdir(parents=True, exist_ok=True)
    for rec in domain_clips(cfg, "target", False, False).records:
        label = resize_label(labels[rec.video], cfg.data.target_resize)
        cv2.imwrite(str(folder / Path(rec.name).with_suffix(".png").name), label)
    return folder


def stream_parts(cfg: Any, stream: Stream, pseudo: Path | None) -> tuple[Any, Any, Any]:
    """Return ``(clips, transform, labels)`` of ``stream`` as ``phases.clip_stream`` builds them."""
    from vsda_deploy.preprocess import preset
    from vsda_train.clips import domain_clips
    from vsda_train.phases import PseudoLabels
    from vsda_train.transforms import ClipTransform

    clips = domain_clips(cfg, stream.domain, stream.domain == "source", stream.flow,
                         frames=cfg.data.target_frames if stream.domain == "target" else "all")
    crop = cfg.data.source_size if stream.domain == "source" else cfg.data.target_size
    transform = ClipTransform(crop, cfg.data.scale_range, hflip=cfg.data.hflip, photometric=stream.augment,
                              norm=preset(cfg.model.preprocess))
    labels = PseudoLabels(pseudo) if stream.phase == "vst" and pseudo is not None else None
    return clips, transform, labels


def time_stream(cfg: Any, stream: Stream, workers: int, clips: int, pseudo: Path | None = None) -> float:
    """Return clips/s of ``stream`` through the training DataLoader with ``workers`` workers."""
    from vsda_train import engine

    cfg = replace(cfg, data=replace(cfg.data, workers=workers))
    data, transform, labels = stream_parts(cfg, stream, pseudo)
    batch = clips_per_step(cfg, stream.phase)
    loader = engine.infinite_loader(engine.TrainClips(data, transform, cfg.run.seed, labels=labels), cfg, 0,
                                    engine.DistInfo(), 0, batch)
    for _ in range(2 * max(workers, 1)):
        next(loader)
    start = time.perf_counter()
    for _ in range(clips):
        next(loader)
    seconds = time.perf_counter() - start
    del loader  # stops the workers before the next row
    return clips * batch / seconds


def stage_ms(cfg: Any, stream: Stream, pseudo: Path | None, samples: int = 4) -> dict[str, float]:
    """Return the mean ms per clip of each stage in one process: reading (decode frames and labels),
    resize and flow read, and the transform (crop, augmentation, normalisation)."""
    import numpy as np

    clips, transform, labels = stream_parts(cfg, stream, pseudo)
    total = dict.fromkeys(("read", "resize_flow", "transform"), 0.0)
    for i in range(samples):
        t0 = time.perf_counter()
        clips.clips[i % len(clips)]
        t1 = time.perf_counter()
        frame, prev, label, flow, meta = clips[i % len(clips)]  # reads again, then resizes and reads flow
        label = labels(meta) if labels is not None else label
        t2 = time.perf_counter()
        transform(frame, prev, label, flow, np.random.default_rng(i))
        t3 = time.perf_counter()
        for key, ms in zip(total, (t1 - t0, (t2 - t1) - (t1 - t0), t3 - t2)):
            total[key] += 1e3 * ms / samples
    return total


def stream_row(cfg: Any, stream: Stream, workers: int, clips: int, rate: StepRate, pseudo: Path | None) -> Row:
    """Return one row: the stream's throughput and the workers one GPU needs at ``rate``."""
    name = f"{stream.name} · {workers} worker{'s' if workers != 1 else ''}"
    load = os.getloadavg()[0]
    try:
        clips_s = time_stream(cfg, stream, workers, clips, pseudo)
    except Exception as exc:  # a failed row is a ❌ with its reason; the suite goes on
        return failed_row(name, exc)
    return Row(name, values=row_values(clips_s, workers, rate, clips_per_step(cfg, stream.phase), load))


def row_values(clips_s: float, workers: int, rate: StepRate, per_step: int, load1: float) -> dict[str, Any]:
    """Return a row's numbers: throughput, per worker (w = 0: the main process), GPU need, workers per GPU."""
    per_worker = clips_s / max(workers, 1)
    need = rate.steps_s * per_step
    return {"workers": workers, "clips_s": clips_s, "ms_clip": 1e3 / clips_s, "per_worker": per_worker,
            "step_s": rate.steps_s, "rate_from": rate.source, "need_s": need,
            "workers_needed": workers_needed(need, per_worker), "load1": load1}


# --- the suite ----------------------------------------------------------------------------------


def build_tree(root: Path, sizes: Sizes) -> dict[str, float]:
    """Write the tree under ``root``; return the mean file sizes (MiB) of frames and labels."""
    data_tree.write_viper(root / "viper", size=sizes.source)
    data_tree.write_cityscapes(root / "cityscapes", size=sizes.target)
    mib = data_tree.mean_file_mib
    return {"viper_jpg_mib": mib(sorted((root / "viper").rglob("img/*/*.jpg"))),
            "viper_cls_mib": mib(sorted((root / "viper").rglob("cls/*/*.png"))),
            "cityscapes_png_mib": mib(sorted((root / "cityscapes" / "leftImg8bit_sequence").rglob("*.png"))),
            "cityscapes_gt_mib": mib(sorted((root / "cityscapes" / "gtFine").rglob("*.png")))}


def prefill_flow(cfg: Any, workers: int = 0) -> dict[str, float]:
    """Fill the flow cache of both domains with ``vsda-train flow``'s code (``workers`` 0: one per core)."""
    from vsda_train.cores import usable_cores
    from vsda_train.flow_pairs import config_passes
    from vsda_train.flow_precompute import fill_cache

    stats = fill_cache(config_passes(cfg, "both"), workers=workers or usable_cores())
    return {"pairs": sum(s.computed for s in stats), "seconds": sum(s.seconds for s in stats)}


def run(workers: tuple[int, ...] = (0, 1, 2), clips: int = 24, config: Path = RECIPE,
        results: Path = REPO / "benchmarks" / "results", peak_tflops: float = H100_BF16_TFLOPS,
        utilisation: float = 0.4, source_augment: str = "", sizes: Sizes = Sizes(),
        sets: tuple[str, ...] = (), flow_workers: int = 0,
        on_row: Callable[[Row], None] | None = None) -> SuiteResult:
    """Return the data suite's result: one row per stream and worker count."""
    settings = {"config": config.name, "workers": list(workers), "clips": clips, "peak_tflops": peak_tflops,
                "utilisation": utilisation, "frames": {"source": list(sizes.source), "target": list(sizes.target)}}
    result = new_result("data", COLUMNS, settings)
    result.extra["name_header"] = "Stream · phase · augmentation · workers"
    with tempfile.TemporaryDirectory(prefix="vsda-data-bench-") as tmp:
        cfg = suite_config(Path(tmp), Path(tmp) / "flow", config, sets)
        files = build_tree(Path(tmp), sizes)
        fill = prefill_flow(cfg, flow_workers)
        pseudo = write_pseudo_labels(cfg, Path(tmp) / "pseudo")
        rates = {**derived_rates(step_flops(cfg), peak_tflops, utilisation), **measured_rates(cfg, results)}
        stages = {}
        for stream in recipe_streams(cfg, source_augment):
            stages[stream.name] = stage_ms(cfg, stream, pseudo)
            for w in workers:
                result.rows.append(stream_row(cfg, stream, w, clips, rates[stream.phase], pseudo))
                if on_row is not None:
                    on_row(result.rows[-1])
    result.extra.update(files=files, flow_fill=fill, rates={p: vars(r) for p, r in rates.items()}, stages_ms=stages)
    result.notes = notes(cfg, rates, files, fill, clips, stages)
    return result


def notes(cfg: Any, rates: dict[str, StepRate], files: dict[str, float], fill: dict[str, float],
          clips: int, stages: dict[str, dict[str, float]]) -> list[str]:
    """Return what a reader needs to read the table right."""
    d = cfg.data
    out = [f"A clip is frame t and t-k through the recipe's training path (load-time resize to "
           f"{d.source_resize[0]}x{d.source_resize[1]} / {d.target_resize[0]}x{d.target_resize[1]}, crop, "
           f"augmentation, {cfg.model.preprocess} normalisation, collation into batch "
           f"{d.batch_size}); {clips} batches timed after 2 x max(workers, 1) warm-up batches; files come from the "
           "page cache (disk reads are not timed).",
           "clips/s per worker: clips/s / workers (0 workers: the main process does the loading). workers / GPU = "
           "ceil(GPU needs / clips/s per worker); a VAT step takes one source and one target clip, and each "
           "domain has its own DataLoader.",
           *(f"GPU step rate, {p}: {r.steps_s:.2f} steps/s, {r.source}: {r.detail}." for p, r in rates.items()),
           "A derived step rate is proportional to the utilisation assumed: at half of it, one GPU needs half "
           "the workers.",
           "Where a clip's time goes in one process (ms; the DataLoader adds collation and the transfer from its "
           "workers): " + "; ".join(f"{name}: read {s['read']:.0f}, resize + flow or pseudo label "
                                     f"{s['resize_flow']:.0f}, transform {s['transform']:.0f}"
                                     for name, s in stages.items()) + ".",
           "On a machine with fewer free cores than workers the per-worker rate drops (the load column): the "
           "1-worker row is the per-core figure.",
           f"Files (synthetic renders, camera look): VIPER JPEG {files['viper_jpg_mib']:.2f} MiB, Cityscapes PNG "
           f"{files['cityscapes_png_mib']:.2f} MiB a frame (the real leftImg8bit PNGs average about 2.1 MiB).",
           f"Flow cache pre-filled by vsda-train flow's code: {fill['pairs']:.0f} pairs in {fill['seconds']:.1f} s.",
           "Target clips are every frame (data.target_frames=all): per clip the same work as the recipe's "
           "labelled-frame positions.",
           f"Load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; the suite "
           "shares the machine with whatever else runs."]
    return out


def plot(result: SuiteResult, path: Path) -> Path | None:
    """Write horizontal bars of clips/s per ✅ row with a red tick at what one GPU needs; return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.status == "ok" and r.values.get("clips_s")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 1.4 + 0.36 * len(rows)))
    colours = ["tab:blue" if r.name.startswith("source") else "tab:orange" for r in rows]
    speeds = [r.values["clips_s"] for r in rows]
    bars = ax.barh(range(len(rows)), speeds, color=colours)
    for i, r in enumerate(rows):
        ax.plot([r.values["need_s"]] * 2, [i - 0.42, i + 0.42], color="red", linewidth=2)
    ax.bar_label(bars, [f"{r.values['clips_s']:.2f} clips/s · {r.values['workers_needed']} workers/GPU" for r in rows],
                 fontsize=7, padding=3)
    ax.set_yticks(range(len(rows)), [r.name for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    top = max(speeds + [r.values["need_s"] for r in rows])
    ax.set_xlim(min(speeds) / 1.5, top * 3)
    how = ", ".join(sorted({r.values["rate_from"] for r in rows}))
    ax.set_xlabel(f"clips / s (log scale); red: clips / s one GPU consumes ({how} step rate)")
    ax.set_title(f"training data path · {result.machine.get('summary', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
