"""Score predictions against Cityscapes-VPS ground truth: mIoU, VPQ and TC (no torch).

Ground truth: ``ROOT/{split}/panoptic_video/*_gtFine_color.png`` with
``ROOT/panoptic_gt_{split}_city_vps.json``, or ``ROOT/{split}/panoptic_inst/`` when the JSON
is absent. Predictions, in either of two layouts:

* official: ``PRED/pan_pred/<image_id>.png`` + ``PRED/pred.json`` (19-trainId categories);
* labels: one single-channel PNG of VIPER15 train ids (255 void) per frame, named like the
  frame (``{stem}_leftImg8bit.png``), for the labelled frames or for every frame. They
  become panoptic with ``PanopticTracker`` (linked over every predicted frame, with DIS
  flow from ``ROOT/{split}/img_all`` or ``img``); TC is measured on consecutive frames.

Everything is scored in the VIPER15 space. ``evaluate_folder`` scores files,
``evaluate_predictor`` a callable; both stream through the same ``SplitScorer``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rich.console import Group
from rich.table import Table

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.flow import create_dis, dis_flow
from vsda_deploy.labels import VIPER15, unknown_ids
from vsda_deploy.metrics import ConfusionMatrix, TemporalConsistency, VideoPanopticQuality, VPQResult
from vsda_deploy.panoptic import DEFAULT_LINK_IOU, DEFAULT_MIN_AREA, PanopticTracker

GT_SPEC_PREFIX = "cityscapes-vps"
PRED_JSON = "pred.json"
PAN_PRED = "pan_pred"


def parse_gt_spec(spec: str) -> Path:
    """Return the dataset root of a ``cityscapes-vps:ROOT`` spec; ValueError for any other."""
    prefix, sep, root = spec.partition(":")
    if not sep or prefix != GT_SPEC_PREFIX or not root:
        raise ValueError(f"{spec}: unknown ground-truth spec; use {GT_SPEC_PREFIX}:ROOT")
    return Path(root)


# --- ground truth ---------------------------------------------------------------------

@dataclass(frozen=True)
class GtFrame:
    """One labelled frame: its name, official image id and label file."""

    name: vps.VpsFrameName
    image_id: str
    path: Path
    segments_info: list[dict] | None = None  # None: a panoptic_inst PNG

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(semantic, instance)`` in the VIPER15 space."""
        if self.segments_info is None:
            return vps.read_panoptic_inst(self.path)
        seg = vps.rgb_to_id(vps.read_rgb_png(self.path))
        return vps.from_segments(seg, self.segments_info, where=str(self.path))


def _by_video(frames: Iterable[GtFrame]) -> dict[str, list[GtFrame]]:
    videos: dict[str, list[GtFrame]] = {}
    for f in frames:
        videos.setdefault(f.name.video, []).append(f)
    return {v: sorted(fs, key=lambda f: f.name.index) for v, fs in sorted(videos.items())}


def _gt_from_json(root: Path, split: str, json_file: Path) -> list[GtFrame]:
    data = vps.load_json(json_file)
    if not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{json_file}: expected 'images' and 'annotations' lists")
    annotations = {str(a.get("image_id")): a for a in data["annotations"]}
    folder = root / split / "panoptic_video"
    frames = []
    for image in data["images"]:
        image_id = str(image.get("id"))
        name = vps.parse_frame_name(str(image.get("file_name", image_id)))
        ann = annotations.get(image_id)
        if ann is None or "segments_info" not in ann:
            raise ValueError(f"{json_file}: no annotation with segments_info for image {image_id}")
        path = folder / f"{name.stem}{vps.VIDEO_GT_SUFFIX}"  # as the official scorer derives it
        if not path.is_file() and "file_name" in ann:
            path = folder / ann["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ground-truth PNG of image {image_id} not found")
        frames.append(GtFrame(name, image_id, path, ann["segments_info"]))
    return frames


def list_gt(root: str | Path, split: str) -> dict[str, list[GtFrame]]:
    """Return ``{video id: labelled frames in order}`` of a Cityscapes-VPS split.

    Reads the official JSON + ``panoptic_video`` when the JSON exists, else ``panoptic_inst``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: Cityscapes-VPS root not found")
    json_file = vps.json_path(root, split)
    if json_file.is_file():
        frames = _gt_from_json(root, split, json_file)
    else:
        folder = root / split / "panoptic_inst"
        if not folder.is_dir():
            raise FileNotFoundError(f"{root}: neither {json_file.name} nor {split}/panoptic_inst/ found")
        frames = []
        for p in sorted(folder.glob(f"*{vps.INST_SUFFIX}")):
            name = vps.parse_frame_name(p.name)
            frames.append(GtFrame(name, name.stem, p))
    if not frames:
        raise FileNotFoundError(f"{root}: no labelled frames in split {split!r}")
    return _by_video(frames)


# --- predictions ----------------------------------------------------------------------

def read_label_png(path: str | Path, num_classes: int = VIPER15.num_classes) -> np.ndarray:
    """Return the uint8 train-id map of a label PNG; errors name the file."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise OSError(f"{path}: cannot read label PNG")
    if label.ndim == 3:  # a grey PNG saved with 3 equal channels is still a label map
        if not (label == label[..., :1]).all():
            raise ValueError(f"{path}: expected a single-channel train-id PNG, got a colour image")
        label = label[..., 0]
    bad = unknown_ids(label, num_classes)
    if bad:
        raise ValueError(f"{path}: unknown class id(s) {bad[:5]} (expected 0..{num_classes - 1}, 255 void)")
    return label.astype(np.uint8)


def list_label_predictions(pred_dir: str | Path) -> dict[str, Path]:
    """Return ``{frame stem: PNG}`` of the PNGs under ``pred_dir`` named like Cityscapes-VPS frames."""
    pred_dir = Path(pred_dir)
    found: dict[str, Path] = {}
    for path in sorted(pred_dir.rglob("*.png")):
        try:
            stem = vps.parse_frame_name(path.name).stem
        except ValueError:
            continue  # not a frame prediction (a figure, a colour legend...)
        if stem in found:
            raise ValueError(f"{path}: second prediction for frame {stem} (first: {found[stem]})")
        found[stem] = path
    if not found:
        raise FileNotFoundError(f"{pred_dir}: no {PRED_JSON} and no label PNGs named like "
                                f"VVVV_FFFF_city_seq_frame{vps.IMAGE_SUFFIX}")
    return found


def _rgb_frames(root: Path, split: str) -> dict[str, Path]:
    """Return ``{stem: RGB frame}`` from ``img`` and ``img_all`` (either may be absent)."""
    frames: dict[str, Path] = {}
    for folder in ("img", "img_all"):
        try:
            videos = vps.list_frames(root, split, folder)
        except FileNotFoundError:
            continue
        for paths in videos.values():
            frames.update({vps.parse_frame_name(p.name).stem: p for p in paths})
    return frames


@dataclass(frozen=True)
class PredFrame:
    """One predicted frame of a video, in frame order."""

    name: vps.VpsFrameName
    semantic: np.ndarray
    rgb: np.ndarray | None
    where: str  # the file or frame the prediction came from, for error messages


# --- scoring --------------------------------------------------------------------------

def _num(value: float) -> float | None:
    return round(float(value), 4) if math.isfinite(value) else None


@dataclass(frozen=True)
class EvalResult:
    """Scores of one split, all in percent (NaN where not measurable)."""

    miou: float
    iou: dict[str, float]
    vpq: VPQResult
    tc: float
    tc_pairs: int
    frames: int
    videos: int
    pred_format: str
    class_names: tuple[str, ...] = VIPER15.classes
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        """Return a JSON-ready dict (NaN -> null): miou, iou, vpq*, vpq_k*, tc, counts, notes."""
        per_k = {str(k): dict(zip(self.class_names, map(_num, self.vpq.per_class(k).tolist())))
                 for k in self.vpq.stats}
        return {
            "miou": _num(self.miou),
            "iou": {n: _num(v) for n, v in self.iou.items()},
            "vpq": _num(self.vpq.vpq()),
            "vpq_things": _num(self.vpq.vpq("things")),
            "vpq_stuff": _num(self.vpq.vpq("stuff")),
            "vpq_k": {str(k): _num(v) for k, v in self.vpq.vpq_k().items()},
            "vpq_k_things": {str(k): _num(v) for k, v in self.vpq.vpq_k("things").items()},
            "vpq_k_stuff": {str(k): _num(v) for k, v in self.vpq.vpq_k("stuff").items()},
            "vpq_per_class": per_k,
            "tc": _num(self.tc),
            "tc_pairs": self.tc_pairs,
            "frames": self.frames,
            "videos": self.videos,
            "pred_format": self.pred_format,
            "notes": list(self.notes),
        }


class SplitScorer:
    """Streams the videos of a split into one confusion matrix, VPQ and TC."""

    def __init__(self, min_area: int = DEFAULT_MIN_AREA, link_iou: float = DEFAULT_LINK_IOU,
                 preset: str = "medium") -> None:
        self.space = VIPER15
        self.cm = ConfusionMatrix(VIPER15.num_classes)
        self.vpq = VideoPanopticQuality(VIPER15.num_classes, VIPER15.things)
        self.tc = TemporalConsistency(VIPER15.num_classes, preset=preset)
        self.tracker = PanopticTracker(VIPER15.things, min_area, link_iou, preset)
        self._dis = create_dis(preset)
        self.frames = 0
        self.videos = 0

    def score_labelled(self, gt: GtFrame, semantic: np.ndarray, instance: np.ndarray, where: str) -> None:
        """Add one labelled frame (the next of the current video) to mIoU and VPQ."""
        gt_semantic, gt_instance = gt.read()
        if gt_semantic.shape != semantic.shape:
            raise ValueError(f"{where}: prediction is {semantic.shape[1]}x{semantic.shape[0]} but ground "
                             f"truth {gt.path.name} is {gt_semantic.shape[1]}x{gt_semantic.shape[0]}")
        self.cm.update(semantic, gt_semantic)
        self.vpq.update(gt_semantic, gt_instance, semantic, instance)
        self.frames += 1

    def score_panoptic_video(self, frames: Iterable[tuple[GtFrame, np.ndarray, np.ndarray, str]]) -> None:
        """Score one video of panoptic predictions ``(gt frame, semantic, instance, where)``."""
        self.vpq.reset()
        self.videos += 1
        for gt, semantic, instance, where in frames:
            self.score_labelled(gt, semantic, instance, where)

    def score_semantic_video(self, frames: Iterable[PredFrame], gt: dict[str, GtFrame]) -> None:
        """Score one video of semantic predictions in frame order; ``gt`` maps stems to labels."""
        self.vpq.reset()
        self.tc.reset()
        self.tracker.reset()
        self.videos += 1
        prev: PredFrame | None = None
        for frame in frames:
            if frame.rgb is not None and frame.rgb.shape[:2] != frame.semantic.shape:
                raise ValueError(f"{frame.where}: prediction is {frame.semantic.shape[1]}x"
                                 f"{frame.semantic.shape[0]} but its RGB frame is "
                                 f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}")
            flow = None  # one flow per pair serves both the linking and TC
            if prev is not None and prev.rgb is not None and frame.rgb is not None:
                flow = dis_flow(frame.rgb, prev.rgb, dis=self._dis)
            instance = self.tracker.update(frame.semantic, flow=flow)
            if prev is None or flow is None or frame.name.index != prev.name.index + 1:
                self.tc.reset()  # TC only over consecutive frames
            self.tc.update(frame.semantic, flow=flow)
            if frame.name.stem in gt:
                self.score_labelled(gt[frame.name.stem], frame.semantic, instance, frame.where)
            prev = frame

    def result(self, pred_format: str, notes: Iterable[str] = ()) -> EvalResult:
        """Return the scores of everything fed so far."""
        notes = list(notes)
        if self.tc.pairs == 0:
            notes.append("TC not measured: no two consecutive frames predicted (with RGB frames for the flow)")
        return EvalResult(
            miou=self.cm.miou(), iou=self.cm.table(self.space.classes), vpq=self.vpq.result(),
            tc=self.tc.value(), tc_pairs=self.tc.pairs, frames=self.frames, videos=self.videos,
            pred_format=pred_format, class_names=self.space.classes, notes=tuple(notes),
        )


def _official_videos(pred_dir: Path, gt: dict[str, list[GtFrame]]) -> Iterator[Iterator[tuple]]:
    json_file = pred_dir / PRED_JSON
    data = vps.load_json(json_file)
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"{json_file}: expected an 'annotations' list")
    annotations = {str(a.get("image_id")): a for a in data["annotations"]}
    for g in (g for video in gt.values() for g in video):  # fail before scoring, not midway
        ann = annotations.get(g.image_id)
        if ann is None or "segments_info" not in ann:
            raise ValueError(f"{json_file}: no prediction (segments_info) for image {g.image_id}")
        png = pred_dir / PAN_PRED / f"{g.image_id}.png"
        if not png.is_file():
            raise FileNotFoundError(f"{png}: missing prediction frame for image {g.image_id}")

    def frames(video: list[GtFrame]) -> Iterator[tuple]:
        for g in video:
            png = pred_dir / PAN_PRED / f"{g.image_id}.png"
            seg = vps.rgb_to_id(vps.read_rgb_png(png))
            semantic, instance = vps.from_segments(seg, annotations[g.image_id]["segments_info"], where=str(png))
            yield g, semantic, instance, str(png)

    for video in gt.values():
        yield frames(video)


def _label_videos(pred_dir: Path, gt: dict[str, list[GtFrame]], rgb: dict[str, Path],
                  notes: list[str]) -> Iterator[tuple[Iterator[PredFrame], dict[str, GtFrame]]]:
    preds = list_label_predictions(pred_dir)
    missing = [g.name.stem for video in gt.values() for g in video if g.name.stem not in preds]
    if missing:
        raise FileNotFoundError(f"{pred_dir}: no prediction for {len(missing)} labelled frame(s), e.g. "
                                f"{missing[0]} (expected {missing[0]}{vps.IMAGE_SUFFIX})")
    by_video: dict[str, list[tuple[vps.VpsFrameName, Path]]] = {}
    for stem, path in preds.items():
        name = vps.parse_frame_name(stem)
        by_video.setdefault(name.video, []).append((name, path))
    extra = sum(len(v) for k, v in by_video.items() if k not in gt)
    if extra:
        notes.append(f"{extra} predicted frame(s) of videos without ground truth ignored")
    no_rgb = sum(1 for stem in preds if stem not in rgb)
    if no_rgb:
        notes.append(f"{no_rgb} predicted frame(s) without an RGB frame: linked without optical flow")

    def frames(video: list[tuple[vps.VpsFrameName, Path]]) -> Iterator[PredFrame]:
        for name, path in sorted(video, key=lambda item: item[0].index):
            image = vps.read_rgb_png(rgb[name.stem]) if name.stem in rgb else None
            yield PredFrame(name, read_label_png(path), image, str(path))

    for video_id, video in gt.items():
        yield frames(by_video[video_id]), {g.name.stem: g for g in video}


def evaluate_folder(pred_dir: str | Path, gt_root: str | Path, split: str = "val", *,
                    min_area: int = DEFAULT_MIN_AREA, link_iou: float = DEFAULT_LINK_IOU,
                    preset: str = "medium") -> EvalResult:
    """Return mIoU, VPQ and TC of a prediction folder (official or label PNGs) on a split."""
    pred_dir, gt_root = Path(pred_dir), Path(gt_root)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: prediction folder not found")
    gt = list_gt(gt_root, split)
    scorer = SplitScorer(min_area, link_iou, preset)
    notes: list[str] = []
    if (pred_dir / PRED_JSON).is_file() or (pred_dir / PAN_PRED).is_dir():
        for frames in _official_videos(pred_dir, gt):
            scorer.score_panoptic_video(frames)
        return scorer.result("official", notes)
    for frames, labelled in _label_videos(pred_dir, gt, _rgb_frames(gt_root, split), notes):
        scorer.score_semantic_video(frames, labelled)
    return scorer.result("labels", notes)


def evaluate_predictor(predict: Callable[[np.ndarray], np.ndarray], gt_root: str | Path, split: str = "val",
                       *, every_frame: bool = True, min_area: int = DEFAULT_MIN_AREA,
                       link_iou: float = DEFAULT_LINK_IOU, preset: str = "medium") -> EvalResult:
    """Return mIoU, VPQ and TC of ``predict(rgb) -> VIPER15 train-id map`` on a split.

    With ``every_frame`` the frames of ``img_all`` are predicted (linking and TC over
    every frame), else only the labelled frames of ``img``.
    """
    gt_root = Path(gt_root)
    gt = list_gt(gt_root, split)
    folder = "img_all" if every_frame and (gt_root / split / "img_all").is_dir() else "img"
    videos = vps.list_frames(gt_root, split, folder)
    scorer = SplitScorer(min_area, link_iou, preset)

    def frames(paths: list[Path]) -> Iterator[PredFrame]:
        for path in paths:
            image = vps.read_rgb_png(path)
            semantic = np.asarray(predict(image))
            if semantic.shape != image.shape[:2]:
                raise ValueError(f"{path}: predict returned shape {semantic.shape}, expected {image.shape[:2]}")
            bad = unknown_ids(semantic, VIPER15.num_classes)
            if bad:
                raise ValueError(f"{path}: predict returned unknown class id(s) {bad[:5]}")
            yield PredFrame(vps.parse_frame_name(path.name), semantic.astype(np.uint8), image, str(path))

    for video_id, labelled in gt.items():
        paths = videos.get(video_id, [])
        have = {vps.parse_frame_name(p.name).stem for p in paths}
        missing = [g.name.stem for g in labelled if g.name.stem not in have]
        if missing:
            raise FileNotFoundError(f"{gt_root / split / folder}: labelled frame {missing[0]}{vps.IMAGE_SUFFIX} "
                                    "not found")
        scorer.score_semantic_video(frames(paths), {g.name.stem: g for g in labelled})
    return scorer.result(f"predictor ({folder})")


# --- report ---------------------------------------------------------------------------

def _fmt(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "-"


def render_result(result: EvalResult) -> Group:
    """Return a Rich renderable: per-class IoU and PQ per k, then mIoU, VPQ and TC."""
    ks = list(result.vpq.stats)
    per_class = Table(title=f"per class: {result.frames} labelled frame(s), {result.videos} video(s)")
    per_class.add_column("class")
    per_class.add_column("IoU", justify="right")
    for k in ks:
        per_class.add_column(f"PQ k={k}", justify="right")
    pq = {k: result.vpq.per_class(k) for k in ks}
    for i, name in enumerate(result.class_names):
        kind = "thing" if i in result.vpq.things else "stuff"
        per_class.add_row(f"{name} ({kind})", _fmt(result.iou[name]), *(_fmt(pq[k][i]) for k in ks))
    summary = Table(title=f"scores, % ({result.pred_format} predictions)")
    summary.add_column("metric")
    for col in ("All", "Things", "Stuff"):
        summary.add_column(col, justify="right")
    for k in ks:
        summary.add_row(f"VPQ k={k}", *(_fmt(result.vpq.vpq_k(s)[k]) for s in ("all", "things", "stuff")))
    summary.add_row("VPQ", *(_fmt(result.vpq.vpq(s)) for s in ("all", "things", "stuff")), style="bold")
    summary.add_row("mIoU", _fmt(result.miou), "", "", style="bold")
    summary.add_row(f"TC ({result.tc_pairs} pairs)", _fmt(result.tc), "", "")
    return Group(per_class, summary, *(f"note: {n}" for n in result.notes))
