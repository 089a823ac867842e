"""Generate the synthetic sim-to-real video benchmark on disk (``vsda-train synth OUT``).

The layouts are the released ones (``docs/datasets.md``). ``OUT/source``: a VIPER tree (train
+ val clips, labelled every frame). ``OUT`` itself is a Cityscapes root holding every target
frame in ``leftImg8bit_sequence/val`` (Cityscapes-VPS is cut from Cityscapes' val sequences) and
each clip's 20th frame in ``gtFine/val``. ``OUT/target``: the Cityscapes-VPS tree as
``prepare_data/`` leaves it: train ``img`` + ``labelmap``, val ``img``, ``img_all``,
``labelmap``, ``panoptic_inst``, ``panoptic_video`` and the JSONs, every ``label_every``-th
frame labelled. ``OUT/oracle``: a Cityscapes-Seq tree of the target-train clips with every
frame labelled, for oracle runs and pseudo-label accuracy only. ``OUT/videos``: the
target-val clips as .mp4. ``OUT/contact_sheet.png`` and ``OUT/summary.json``. Each clip draws
from its own generator seeded by ``(seed, domain, split, clip)``, so a seed fixes every byte
of the label files, however many worker processes render the clips.
"""

from __future__ import annotations

import multiprocessing
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.cityscapes_vps import dump_json, write_rgb_png
from vsda_deploy.labels import IGNORE_INDEX, VIPER15
from vsda_train.synth import writers as W
from vsda_train.synth.config import SynthConfig
from vsda_train.synth.raster import hood_mask, rasterize
from vsda_train.synth.render import SourceLook, TargetLook, render_source, render_target
from vsda_train.synth.scene import build_street

OUTPUTS = ("source", "target", "oracle", "leftImg8bit_sequence", "gtFine", "videos", "contact_sheet.png",
           "summary.json")
CITYSCAPES_FRAME = 20  # Cityscapes annotates the 20th frame of a snippet
_DOMAIN = {"source": 0, "target": 1}
_SPLIT = {"train": 0, "val": 1}
SHEET_ROWS = 3  # clips shown in the contact sheet


@dataclass(frozen=True)
class Frame:
    """One generated frame: image and exact labels."""

    rgb: np.ndarray  # (H, W, 3) uint8
    semantic: np.ndarray  # (H, W) uint8 VIPER15 train ids, 255 void
    instance: np.ndarray  # (H, W) int32, persistent over the clip
    hood: np.ndarray  # (H, W) bool, ego-vehicle hood


class ClassCounter:
    """Per-class pixel counts and the number of frames each class appears in."""

    def __init__(self) -> None:
        self.pixels = np.zeros(VIPER15.num_classes + 1, np.int64)  # last bin: void
        self.frames_with = np.zeros(VIPER15.num_classes, np.int64)
        self.frames = 0

    def add(self, semantic: np.ndarray) -> None:
        ids = np.where(semantic == IGNORE_INDEX, VIPER15.num_classes, semantic)
        counts = np.bincount(ids.ravel(), minlength=VIPER15.num_classes + 1)
        self.pixels += counts
        self.frames_with += counts[:-1] > 0
        self.frames += 1

    def summary(self) -> dict:
        """Return ``{pixels_percent, void_percent, frames_percent}`` (percent of all pixels / frames)."""
        total = max(int(self.pixels.sum()), 1)
        pct = 100 * self.pixels / total
        return {
            "pixels_percent": {n: round(float(p), 3) for n, p in zip(VIPER15.classes, pct)},
            "void_percent": round(float(pct[-1]), 3),
            "frames_percent": {n: round(100 * float(f) / max(self.frames, 1), 1)
                               for n, f in zip(VIPER15.classes, self.frames_with)},
        }


def clip_rng(seed: int, domain: str, split: str, clip: int) -> np.random.Generator:
    """Return the random generator of one clip (independent of every other clip)."""
    return np.random.default_rng([seed, _DOMAIN[domain], _SPLIT[split], clip])


def render_clip(config: SynthConfig, domain: str, rng: np.random.Generator) -> Iterator[Frame]:
    """Yield the frames of one clip of ``domain`` (source | target)."""
    h, w = config.frame_size(domain)
    layout = config.source_layout if domain == "source" else config.target_layout
    street = build_street(layout, rng, config.frames, w)
    hood = hood_mask(w, h, layout.hood_height)
    look = SourceLook.draw(config.source_style, rng) if domain == "source" else TargetLook.draw(
        config.target_style, rng)
    for t in range(config.frames):
        geom = rasterize(street, t, w, h, hood)
        if domain == "source":
            rgb = render_source(geom, street, config.source_style, look)
        else:
            rgb = render_target(geom, street, config.target_style, look, rng)
        yield Frame(rgb, geom.semantic(), geom.instance(), hood)


ClipJob = tuple[SynthConfig, str, str, int]  # config, domain, split, clip


def render_job(job: ClipJob) -> list[Frame]:
    """Return every frame of one clip (what a worker process runs)."""
    config, domain, split, clip = job
    return list(render_clip(config, domain, clip_rng(config.seed, domain, split, clip)))


def _quiet_worker() -> None:
    """One OpenCV thread per worker: the workers share the cores."""
    cv2.setNumThreads(1)


class ClipRenderer:
    """Renders clips in ``workers`` spawned processes (in this one for ``workers <= 1``), a few ahead."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._pool: Executor | None = None

    def __enter__(self) -> ClipRenderer:
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_quiet_worker)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def clips(self, config: SynthConfig, domain: str, split: str, clips: int) -> Iterator[list[Frame]]:
        """Yield the frames of clips ``0..clips-1`` of ``domain``/``split`` in order."""
        jobs = ((config, domain, split, k) for k in range(clips))
        if self._pool is None:
            yield from map(render_job, jobs)
            return
        ahead: deque[Future[list[Frame]]] = deque()
        for job in jobs:
            ahead.append(self._pool.submit(render_job, job))
            if len(ahead) > 2 * self.workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def total_frames(config: SynthConfig) -> int:
    """Return how many frames ``generate`` renders."""
    c = config
    return (c.source_clips + c.source_val_clips + c.target_train_clips + c.target_val_clips) * c.frames


def prepare_output(out: Path, force: bool) -> None:
    """Refuse a non-empty ``out`` unless ``force``; with ``force`` remove only what ``generate`` writes."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out}: folder is not empty; pass --force to overwrite it")
        for name in OUTPUTS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate(out: str | Path, config: SynthConfig | None = None, force: bool = False,
             on_frame: Callable[[], None] | None = None, workers: int = 1) -> dict:
    """Write the benchmark to ``out`` and return its summary (also written to ``out/summary.json``).

    ``workers`` processes render clips while this one writes them; the files do not depend on it.
    """
    config = config or SynthConfig()
    out = Path(out)
    prepare_output(out, force)
    tick = on_frame or (lambda: None)
    counters = {k: ClassCounter() for k in ("source_train", "source_val", "target_train", "target_val")}
    sheet: dict[str, list[Frame]] = {"source": [], "target": []}
    with ClipRenderer(workers) as renderer:
        _write_source(out, config, counters, sheet["source"], tick, renderer)
        labelled, videos = _write_target(out, config, counters, sheet["target"], tick, renderer)
    _write_sheet(out / "contact_sheet.png", sheet)
    summary = _summary(config, counters, labelled, videos)
    dump_json(out / "summary.json", summary)
    return summary


def _write_source(out: Path, config: SynthConfig, counters: dict[str, ClassCounter], sheet: list[Frame],
                  tick: Callable[[], None], renderer: ClipRenderer) -> None:
    """Write the VIPER tree ``out/source`` (train and val clips, every frame labelled)."""
    for split, clips in (("train", config.source_clips), ("val", config.source_val_clips)):
        for k, frames in enumerate(renderer.clips(config, "source", split, clips)):
            for t, fr in enumerate(frames):
                W.write_viper_frame(out / "source", split, k + 1, t, fr.rgb, fr.semantic, fr.instance,
                                    fr.hood)
                counters[f"source_{split}"].add(fr.semantic)
                if split == "train" and t == config.frames // 2 and k < SHEET_ROWS:
                    sheet.append(fr)
                tick()


@dataclass(frozen=True)
class TargetClip:
    """Where a target clip lives in Cityscapes and Cityscapes-VPS."""

    video: int  # Cityscapes-VPS video number (train clips first, then val)
    city: str
    seq: int
    first: int  # Cityscapes frame number of the clip's first frame

    @classmethod
    def of(cls, config: SynthConfig, g: int) -> TargetClip:
        """Return clip ``g`` (over train then val): the first city's clips share one long recording
        (``seq`` 0, like ``frankfurt_000000``), the others are 30-frame snippets from 0 (20th: ``_000019``)."""
        city, j = config.cities[g % len(config.cities)], g // len(config.cities)
        return cls(g + 1, city, 0, 275 + 300 * j) if g % len(config.cities) == 0 else cls(g + 1, city, j, 0)


def labelled_positions(config: SynthConfig) -> tuple[list[int], int]:
    """Return the labelled frames (1-based positions in a clip) and the Cityscapes-annotated one among them."""
    positions = [p for p in range(1, config.frames + 1) if p % config.label_every == 0]
    return positions, CITYSCAPES_FRAME if CITYSCAPES_FRAME in positions else positions[-1]


def _write_target(out: Path, config: SynthConfig, counters: dict[str, ClassCounter], sheet: list[Frame],
                  tick: Callable[[], None], renderer: ClipRenderer) -> tuple[dict[str, int], list[str]]:
    """Write the Cityscapes frames and 20th-frame labels, ``out/target``, ``out/oracle`` and the val videos."""
    positions, cityscapes_pos = labelled_positions(config)
    target, ids = out / "target", W.PanopticVideoIds(config.seed)
    json_images: list[dict] = []
    annotations: list[dict] = []
    all_info: list[dict] = []
    videos, labelled, count, g = [], {"train": 0, "val": 0}, 0, 0
    for split, clips in (("train", config.target_train_clips), ("val", config.target_val_clips)):
        for k, frames in enumerate(renderer.clips(config, "target", split, clips)):
            clip, g = TargetClip.of(config, g), g + 1
            ids.new_video()
            objects = W.ObjectNumbers()
            video = W.ClipVideo(out / "videos" / f"val_{k + 1:04d}.mp4", config.fps, config.width,
                                config.height) if split == "val" else None
            for t, fr in enumerate(frames):
                name = W.cityscapes_name(clip.city, clip.seq, clip.first + t)
                frame = W.write_sequence_frame(out, "val", clip.city, name, fr.rgb)
                counters[f"target_{split}"].add(fr.semantic)
                tick()
                if split == "train":
                    W.link_or_copy(frame, out / "oracle" / "leftImg8bit_sequence" / "train" / clip.city / frame.name)
                    W.write_label_ids(out / "oracle", "train", clip.city, name, fr.semantic)
                else:
                    W.link_or_copy(frame, target / "val" / "img_all" / frame.name)
                    all_info.append({"id": clip.video * 10000 + t + 1, "file_name": frame.name,
                                     "width": config.width, "height": config.height})
                    video.write(fr.rgb)
                    if t == config.frames // 2 and k < SHEET_ROWS:
                        sheet.append(fr)
                if t + 1 == cityscapes_pos:
                    W.write_label_ids(out, "val", clip.city, name, fr.semantic)
                if t + 1 not in positions:
                    continue
                count += 1
                labelled[split] += 1
                image_id = f"{clip.video:04d}_{count:04d}_{name}"
                image = image_id + (vps.IMAGE_SUFFIX if t + 1 == cityscapes_pos else vps.NEW_IMAGE_SUFFIX)
                W.link_or_copy(frame, target / split / "img" / image)
                label = vps.label_file_name(image)
                info = W.write_vps_labels(target, split, label, fr.semantic, objects(fr.semantic, fr.instance),
                                          ids if split == "val" else None)
                if info is not None:
                    json_images.append({"id": image_id, "width": config.width, "height": config.height,
                                        "file_name": image})
                    annotations.append({"image_id": image_id, "file_name": label, "segments_info": info})
            if video is not None:
                video.close()
                videos.append(str(video.path.relative_to(out)))
    W.write_vps_json(target, "val", json_images, annotations)
    W.write_all_info_json(target, "val", all_info)
    return labelled, videos


def _write_sheet(path: Path, sheet: dict[str, list[Frame]]) -> None:
    rows = []
    for s, t in zip(sheet["source"], sheet["target"]):
        size = (t.rgb.shape[1], t.rgb.shape[0])  # tiles of one size: the source shown at the target's
        src = [cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in
               (s.rgb, W.label_overlay(s.rgb, s.semantic, s.instance))]
        rows.append([*src, t.rgb, W.label_overlay(t.rgb, t.semantic, t.instance)])
    titles = ["source (simulator)", "source labels", "target (camera)", "target labels"]
    write_rgb_png(path, W.contact_sheet(rows, titles))


def _summary(config: SynthConfig, counters: dict[str, ClassCounter], labelled: dict[str, int],
             videos: list[str]) -> dict:
    f = config.frames
    return {
        "seed": config.seed,
        "size": [config.width, config.height],
        "source_size": list(config.frame_size("source"))[::-1],
        "counts": {
            "source_train": {"clips": config.source_clips, "frames": config.source_clips * f},
            "source_val": {"clips": config.source_val_clips, "frames": config.source_val_clips * f},
            "target_train": {"clips": config.target_train_clips, "frames": config.target_train_clips * f,
                             "labelled_frames": labelled["train"],
                             "oracle_labelled_frames": config.target_train_clips * f},
            "target_val": {"clips": config.target_val_clips, "frames": config.target_val_clips * f,
                           "labelled_frames": labelled["val"]},
        },
        "classes": {k: c.summary() for k, c in counters.items()},
        "layout": {"source": "OUT/source (VIPER)", "cityscapes": "OUT (leftImg8bit_sequence/val, gtFine/val)",
                   "target": "OUT/target (Cityscapes-VPS)",
                   "oracle": "OUT/oracle (Cityscapes-Seq, split train: every target-train frame labelled)",
                   "videos": videos, "contact_sheet": "contact_sheet.png"},
        "config": config.to_dict(),
    }
