"""Score predictions against Cityscapes-VPS ground truth: mIoU, VPQ and TC (no torch).

Ground truth is read by the one Cityscapes-VPS reader (``vsda_deploy.data.cityscapes_vps``):
``panoptic_video/`` + ``panoptic_gt_{split}_city_vps.json`` where present, else
``panoptic_inst/``. Predictions, in either of two layouts:

* official: ``PRED/pan_pred/{image_id}.png`` + ``PRED/pred.json`` (19-trainId categories),
  scored by the rules of the official ``tools/eval_vpq.py`` (``vsda_deploy.vpq``): every
  segment id is its own segment, whatever its class;
* labels: one single-channel PNG of train ids (255 void) per frame, named after the frame:
  ``{image_id}*.png`` or the plain Cityscapes name ``{city}_{seq}_{frame}*.png`` (what
  ``vsda-infer --save-labels`` writes for ``img_all`` frames), for the labelled frames or for
  every frame. They become panoptic with ``PanopticTracker`` (linked over every predicted
  frame, with DIS flow from the frames); TC is measured on consecutive frames.

Everything is scored in one label space (``label_space``: viper15 by default, synthia12, or
cityscapes19, which scores official files exactly as the official scorer does); ground-truth
classes outside it are void. ``evaluate_folder`` scores files, ``evaluate_predictor`` a
callable; both stream through the same ``SplitScorer``.
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
from vsda_deploy.data.base import DatasetError
from vsda_deploy.data.cityscapes_vps import VpsLabels, list_labelled, named_frames, sequence_folder, split_videos
from vsda_deploy.flow import create_dis, dis_flow
from vsda_deploy.instance_grouping import Prediction, split_prediction
from vsda_deploy.labels import VIPER15, LabelSpace, get_label_space, unknown_ids
from vsda_deploy.metrics import ConfusionMatrix, TemporalConsistency, VideoPanopticQuality, VPQResult
from vsda_deploy.panoptic import DEFAULT_LINK_IOU, DEFAULT_MIN_AREA, DEFAULT_SPLIT_RATIO, PanopticTracker, ThingSegments
from vsda_deploy.vpq import Segments, segments_from_labels

GT_SPEC_PREFIX = "cityscapes-vps"
PRED_JSON = "pred.json"
PAN_PRED = "pan_pred"


def parse_gt_spec(spec: str) -> Path:
    """Return the dataset root of a ``cityscapes-vps:ROOT`` spec; DatasetError for any other."""
    prefix, sep, root = spec.partition(":")
    if not sep or prefix != GT_SPEC_PREFIX or not root:
        raise DatasetError(f"{spec}: unknown ground-truth spec; use {GT_SPEC_PREFIX}:ROOT")
    return Path(root)


def _space(space: str | LabelSpace) -> LabelSpace:
    return space if isinstance(space, LabelSpace) else get_label_space(space)


# --- ground truth ---------------------------------------------------------------------

@dataclass(frozen=True)
class GtFrame:
    """One labelled frame: its name (``stem`` = image id), label file, image file and reader."""

    name: vps.VpsFrameName
    image_id: str
    path: Path
    image: Path
    labels: VpsLabels = field(compare=False, repr=False)

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(semantic, instance)`` in the reader's label space."""
        return self.labels.read(self.path, self.image_id)


def list_gt(root: str | Path, split: str, label_space: str | LabelSpace = VIPER15,
            vps_labels: str = "auto") -> dict[str, list[GtFrame]]:
    """Return ``{video id: labelled frames in order}`` of a Cityscapes-VPS split (panoptic labels)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: Cityscapes-VPS root not found")
    labels = VpsLabels(root, split, vps_labels, _space(label_space))
    if not labels.panoptic:
        raise DatasetError(f"{root / split}: VPQ needs panoptic labels (panoptic_video/ + "
                         f"{vps.json_path(root, split).name}, or panoptic_inst/); found labelmap/ only")
    return {v: [GtFrame(f.name, f.name.stem, labels.path(f), f.image, labels) for f in fs]
            for v, fs in list_labelled(root, split).items()}


def split_frames(root: Path, split: str, gt: dict[str, list[GtFrame]], every_frame: bool = True
                 ) -> tuple[str, dict[str, list[tuple[vps.VpsFrameName, Path]]]]:
    """Return ``(folder, {video: [(name, frame)]})``: every frame of each video (``img_all``, or
    Cityscapes' ``leftImg8bit_sequence/val`` for a split without it) when there is such a
    folder and ``every_frame``, else the labelled frames of ``img``."""
    folder = sequence_folder(root, split, None) if every_frame else None
    if folder is not None:
        labelled = list_labelled(root, split)
        return folder.name if folder.name == "img_all" else "leftImg8bit_sequence", named_frames(
            labelled, split_videos(root, split, labelled)[1])
    return "img", {v: [(g.name, g.image) for g in frames] for v, frames in gt.items()}


# --- predictions ----------------------------------------------------------------------

def read_label_png(path: str | Path, num_classes: int = VIPER15.num_classes) -> np.ndarray:
    """Return the uint8 train-id map of a label PNG; errors name the file."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise OSError(f"{path}: cannot read label PNG")
    if label.ndim == 3:  # a grey PNG saved with 3 equal channels is still a label map
        if not (label == label[..., :1]).all():
            raise DatasetError(f"{path}: expected a single-channel train-id PNG, got a colour image")
        label = label[..., 0]
    bad = unknown_ids(label, num_classes)
    if bad:
        raise DatasetError(f"{path}: unknown class id(s) {bad[:5]} (expected 0..{num_classes - 1}, 255 void)")
    return label.astype(np.uint8)


def _frame_key(name: str) -> str | None:
    """Return the image id or the plain ``{city}_{seq}_{frame}`` a file is named after (None: neither)."""
    for parse in (vps.parse_frame_name, vps.parse_cityscapes_name):
        try:
            return parse(name).stem
        except DatasetError:
            continue
    return None


def list_label_predictions(pred_dir: str | Path) -> dict[str, Path]:
    """Return ``{image id or plain frame name: PNG}`` of the frame-named PNGs under ``pred_dir``."""
    pred_dir = Path(pred_dir)
    found: dict[str, Path] = {}
    for path in sorted(pred_dir.rglob("*.png")):
        key = _frame_key(path.name)
        if key is None:
            continue  # not a frame prediction (a figure, a colour legend...)
        if key in found:
            raise DatasetError(f"{path}: second prediction for frame {key} (first: {found[key]})")
        found[key] = path
    if not found:
        raise FileNotFoundError(f"{pred_dir}: no {PRED_JSON} and no label PNGs named like frames "
                                f"(VVVV_FFFF_city_seq_frame*.png or city_seq_frame*.png)")
    return found


@dataclass(frozen=True)
class PredFrame:
    """One predicted frame of a video, in frame order."""

    name: vps.VpsFrameName
    semantic: np.ndarray
    rgb: np.ndarray | None
    where: str  # the file or frame the prediction came from, for error messages
    segments: ThingSegments | None = None  # an instance head's thing segments; None: cut from ``semantic``


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
    label_space: str = VIPER15.name

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
            "label_space": self.label_space,
            "notes": list(self.notes),
        }


class SplitScorer:
    """Streams the videos of a split into one confusion matrix, VPQ and TC, in one label space."""

    def __init__(self, min_area: int = DEFAULT_MIN_AREA, link_iou: float = DEFAULT_LINK_IOU,
                 preset: str = "medium", label_space: str | LabelSpace = VIPER15,
                 split_ratio: float = DEFAULT_SPLIT_RATIO) -> None:
        self.space = space = _space(label_space)
        self.cm = ConfusionMatrix(space.num_classes)
        self.vpq = VideoPanopticQuality(space.num_classes, space.things, evaluated=space.evaluated)
        self.tc = TemporalConsistency(space.num_classes, preset=preset)
        self.tracker = PanopticTracker(space.things, min_area, link_iou, preset, split_ratio)
        self._dis = create_dis(preset)
        self.frames = 0
        self.videos = 0

    def _read_gt(self, gt: GtFrame, shape: tuple[int, ...], where: str) -> tuple[np.ndarray, np.ndarray]:
        gt_semantic, gt_instance = gt.read()
        if gt_semantic.shape != shape:
            raise DatasetError(f"{where}: prediction is {shape[1]}x{shape[0]} but ground "
                             f"truth {gt.path.name} is {gt_semantic.shape[1]}x{gt_semantic.shape[0]}")
        return gt_semantic, gt_instance

    def score_labelled(self, gt: GtFrame, semantic: np.ndarray, instance: np.ndarray, where: str) -> None:
        """Add one labelled frame (the next of the current video), prediction as ``(semantic, instance)``."""
        gt_semantic, gt_instance = self._read_gt(gt, semantic.shape, where)
        self.cm.update(semantic, gt_semantic)
        self.vpq.update(gt_semantic, gt_instance, semantic, instance)
        self.frames += 1

    def score_segments(self, gt: GtFrame, semantic: np.ndarray, segments: Segments, where: str) -> None:
        """Add one labelled frame, prediction as official segments (``semantic``: their classes, for mIoU)."""
        gt_semantic, gt_instance = self._read_gt(gt, semantic.shape, where)
        self.cm.update(semantic, gt_semantic)
        self.vpq.update_segments(segments_from_labels(gt_semantic, gt_instance, self.space.things), segments)
        self.frames += 1

    def score_panoptic_video(self, frames: Iterable[tuple[GtFrame, np.ndarray, Segments, str]]) -> None:
        """Score one video of official predictions ``(gt frame, semantic, segments, where)``."""
        self.vpq.reset()
        self.videos += 1
        for gt, semantic, segments, where in frames:
            self.score_segments(gt, semantic, segments, where)

    def score_semantic_video(self, frames: Iterable[PredFrame], gt: dict[str, GtFrame]) -> None:
        """Score one video of semantic predictions in frame order; ``gt`` maps frame stems to labels."""
        self.vpq.reset()
        self.tc.reset()
        self.tracker.reset()
        self.videos += 1
        prev: PredFrame | None = None
        for frame in frames:
            if frame.rgb is not None and frame.rgb.shape[:2] != frame.semantic.shape:
                raise DatasetError(f"{frame.where}: prediction is {frame.semantic.shape[1]}x"
                                 f"{frame.semantic.shape[0]} but its RGB frame is "
                                 f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}")
            flow = None  # one flow per pair serves both the linking and TC
            if prev is not None and prev.rgb is not None and frame.rgb is not None:
                flow = dis_flow(frame.rgb, prev.rgb, dis=self._dis)
            instance = self.tracker.update(frame.semantic, flow=flow, segments=frame.segments)
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
            miou=self.cm.miou(self.space.eval_classes), iou=self.cm.table(self.space.classes),
            vpq=self.vpq.result(), tc=self.tc.value(), tc_pairs=self.tc.pairs, frames=self.frames,
            videos=self.videos, pred_format=pred_format, class_names=self.space.classes, notes=tuple(notes),
            label_space=self.space.name,
        )


def _official_videos(pred_dir: Path, gt: dict[str, list[GtFrame]],
                     space: LabelSpace) -> Iterator[Iterator[tuple]]:
    json_file = pred_dir / PRED_JSON
    data = vps.load_json(json_file)
    if not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{json_file}: expected an 'annotations' list")
    annotations = {str(a.get("image_id")): a for a in data["annotations"]}
    for g in (g for video in gt.values() for g in video):  # fail before scoring, not midway
        ann = annotations.get(g.image_id)
        if ann is None or "segments_info" not in ann:
            raise DatasetError(f"{json_file}: no prediction (segments_info) for image {g.image_id}")
        png = pred_dir / PAN_PRED / f"{g.image_id}.png"
        if not png.is_file():
            raise FileNotFoundError(f"{png}: missing prediction frame for image {g.image_id}")

    def frames(video: list[GtFrame]) -> Iterator[tuple]:
        for g in video:
            png = pred_dir / PAN_PRED / f"{g.image_id}.png"
            seg = vps.rgb_to_id(vps.read_rgb_png(png))
            info = annotations[g.image_id]["segments_info"]
            semantic, _ = vps.from_segments(seg, info, str(png), space)
            classes = {i: c for i, (c, _) in vps.segment_classes(info, space, str(png)).items()}
            yield g, semantic, Segments(seg, classes), str(png)

    for video in gt.values():
        yield frames(video)


def _label_videos(pred_dir: Path, gt: dict[str, list[GtFrame]], frames: dict[str, list[tuple]],
                  num_classes: int, notes: list[str]) -> Iterator[tuple[Iterator[PredFrame], dict[str, GtFrame]]]:
    preds = list_label_predictions(pred_dir)
    missing = [g for video in gt.values() for g in video if g.image_id not in preds and g.name.plain not in preds]
    if missing:
        raise FileNotFoundError(f"{pred_dir}: no prediction for {len(missing)} labelled frame(s), e.g. "
                                f"{missing[0].image_id} (expected {missing[0].image.name} or "
                                f"{missing[0].name.plain}{vps.IMAGE_SUFFIX})")
    by_video: dict[str, list[tuple[vps.VpsFrameName, Path, Path]]] = {}
    used = set()
    for v, named in frames.items():
        for name, image in named:
            key = name.stem if name.stem in preds else name.plain if name.plain in preds else None
            if key is not None and v in gt:
                by_video.setdefault(v, []).append((name, preds[key], image))
                used.add(key)
    if len(preds) > len(used):
        notes.append(f"{len(preds) - len(used)} predicted frame(s) not in a labelled video of the split ignored")

    def video_frames(video: list[tuple[vps.VpsFrameName, Path, Path]]) -> Iterator[PredFrame]:
        for name, path, image in video:
            yield PredFrame(name, read_label_png(path, num_classes), vps.read_rgb_png(image), str(path))

    for v, labelled in gt.items():
        yield video_frames(by_video[v]), {g.name.stem: g for g in labelled}


def evaluate_folder(pred_dir: str | Path, gt_root: str | Path, split: str = "val", *,
                    min_area: int = DEFAULT_MIN_AREA, link_iou: float = DEFAULT_LINK_IOU,
                    preset: str = "medium", label_space: str | LabelSpace = VIPER15,
                    split_ratio: float = DEFAULT_SPLIT_RATIO) -> EvalResult:
    """Return mIoU, VPQ and TC of a prediction folder (official or label PNGs) on a split."""
    pred_dir, gt_root, space = Path(pred_dir), Path(gt_root), _space(label_space)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: prediction folder not found")
    gt = list_gt(gt_root, split, space)
    scorer = SplitScorer(min_area, link_iou, preset, space, split_ratio)
    notes: list[str] = []
    if (pred_dir / PRED_JSON).is_file() or (pred_dir / PAN_PRED).is_dir():
        for frames in _official_videos(pred_dir, gt, space):
            scorer.score_panoptic_video(frames)
        return scorer.result("official", notes)
    folder, frames = split_frames(gt_root, split, gt)
    if folder == "img":
        notes.append(f"{gt_root / split}: no img_all/ (nor leftImg8bit_sequence/val): labelled frames only")
    for video, labelled in _label_videos(pred_dir, gt, frames, space.num_classes, notes):
        scorer.score_semantic_video(video, labelled)
    return scorer.result("labels", notes)


def evaluate_predictor(predict: Callable[[np.ndarray], Prediction], gt_root: str | Path, split: str = "val",
                       *, every_frame: bool = True, min_area: int = DEFAULT_MIN_AREA,
                       link_iou: float = DEFAULT_LINK_IOU, preset: str = "medium",
                       label_space: str | LabelSpace = VIPER15,
                       split_ratio: float = DEFAULT_SPLIT_RATIO) -> EvalResult:
    """Return mIoU, VPQ and TC of ``predict(rgb) -> train-id map`` (of ``label_space``) on a split.

    ``predict`` may also return ``(train-id map, thing segments)`` (a model with an instance head,
    ``instance_grouping.group_instances``); the tracker then links those segments instead of cutting
    the map's thing components.

    With ``every_frame`` every frame of each video is predicted (``img_all``, or Cityscapes'
    sequences for the train split: linking and TC over every frame), else only the labelled
    frames of ``img``.
    """
    gt_root, space = Path(gt_root), _space(label_space)
    gt = list_gt(gt_root, split, space)
    folder, videos = split_frames(gt_root, split, gt, every_frame)
    scorer = SplitScorer(min_area, link_iou, preset, space, split_ratio)

    def frames(named: list[tuple[vps.VpsFrameName, Path]]) -> Iterator[PredFrame]:
        for name, path in named:
            image = vps.read_rgb_png(path)
            semantic, segments = split_prediction(predict(image))
            if semantic.shape != image.shape[:2]:
                raise ValueError(f"{path}: predict returned shape {semantic.shape}, expected {image.shape[:2]}")
            bad = unknown_ids(semantic, space.num_classes)
            if bad:
                raise ValueError(f"{path}: predict returned unknown class id(s) {bad[:5]}")
            yield PredFrame(name, semantic.astype(np.uint8), image, str(path), segments)

    for video_id, labelled in gt.items():
        scorer.score_semantic_video(frames(videos[video_id]), {g.name.stem: g for g in labelled})
    return scorer.result(f"predictor ({folder})")


# --- report ---------------------------------------------------------------------------

def _fmt(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "-"


def render_result(result: EvalResult) -> Group:
    """Return a Rich renderable: per-class IoU and PQ per k, then mIoU, VPQ and TC."""
    ks = list(result.vpq.stats)
    per_class = Table(title=f"per class ({result.label_space}): {result.frames} labelled frame(s), "
                            f"{result.videos} video(s)")
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
