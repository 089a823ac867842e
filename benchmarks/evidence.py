"""What the adaptation table must show: its goals, each met or missed with the measured number.

Two reference figures go with them, both measured on the benchmark's target-val:

* the panoptic ceiling: VPQ of the ground-truth semantics themselves through vsda's panoptic step
  (things split into connected components, linked by flow), the most a semantic model can score;
* the thing sizes: each thing class's ground-truth instances on val, their median area and the
  share under 16 pixels (two by two logits of a stride-8 model), which bound VPQ-things;
* the thing fates: what the panoptic step makes of a model's prediction for each large ground-truth
  instance (matched, merged with a neighbour, partial, missed), which says why VPQ-things is low;
* the in-domain check: image PQ-things of the source-only model on the source's own labelled val
  frames (VIPER ``inst`` instances), which says whether a semantic model of this size can score
  things at all, before any domain gap;
* the colour check: pixel accuracy of a per-pixel colour classifier fitted on target labels minus
  one fitted on source labels (``vsda-train colour-baseline``): colour alone must not close the gap.
"""

from __future__ import annotations

import statistics
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vsda_deploy.instance_grouping import Prediction, split_prediction
from vsda_deploy.panoptic import ThingSegments

# the self-training rows and their image-level twins (video row -> image row)
TWINS = {"vat_vst": "image_st", "vst_wide": "image_st", "mt": "mt_img", "mt_tps": "mt_img"}
PHASE2 = ("image_st", "vat_vst", "vst_wide", "mt", "mt_tps", "mt_img")


def panoptic_ceiling(gt_root: str | Path, label_space: str = "viper15") -> dict[str, float]:
    """Return VPQ (all / things / stuff, percent) of the ground-truth semantics of the val split
    through the panoptic step, linking the labelled frames only."""
    from vsda_deploy.evaluation import evaluate_folder, list_gt

    with tempfile.TemporaryDirectory() as tmp:
        for video in list_gt(gt_root, "val", label_space).values():
            for frame in video:
                semantic, _ = frame.read()
                if not cv2.imwrite(str(Path(tmp) / frame.image.name), semantic):
                    raise OSError(f"{tmp}: cannot write {frame.image.name}")
        result = evaluate_folder(tmp, gt_root, "val", label_space=label_space).to_json()
    return {k: result[k] for k in ("vpq", "vpq_things", "vpq_stuff")}


SMALL_AREA = 16  # pixels: an instance this small covers at most 2 x 2 logits of a stride-8 model


def thing_sizes(gt_root: str | Path, label_space: str = "viper15") -> dict[str, dict[str, float]]:
    """Return ``{thing class: {instances, median_area, small}}`` of the val ground truth (area in
    pixels at the labels' size; ``small``: the percentage under ``SMALL_AREA`` pixels)."""
    from vsda_deploy.evaluation import list_gt
    from vsda_deploy.labels import get_label_space

    space = get_label_space(label_space)
    areas: dict[int, list[int]] = {c: [] for c in space.things}
    for video in list_gt(gt_root, "val", label_space).values():
        for frame in video:
            semantic, instance = frame.read()
            for c in space.things:
                _, counts = np.unique(instance[(semantic == c) & (instance > 0)], return_counts=True)
                areas[c] += counts.tolist()
    return {space.classes[c]: {"instances": len(a), "median_area": float(np.median(a)),
                               "small": 100.0 * float(np.mean(np.asarray(a) < SMALL_AREA))}
            for c, a in areas.items() if a}


LARGE_AREA = 64  # pixels: an instance this large spans at least one whole logit of a stride-8 model
FATES = ("match", "merged", "partial", "missed", "other")


def instance_fates(gt_semantic: np.ndarray, gt_instance: np.ndarray, semantic: np.ndarray,
                   things: Iterable[int], min_area: int = LARGE_AREA,
                   segments: ThingSegments | None = None) -> dict[int, Counter]:
    """Return ``{thing class: Counter(fate)}`` for the ground-truth instances of at least ``min_area``
    pixels in one frame, against the thing components of a predicted ``semantic`` map (as the panoptic
    step cuts them: ``DEFAULT_MIN_AREA``, ``DEFAULT_SPLIT_RATIO``). The component of the instance's
    class that overlaps it most decides: ``match`` (IoU > 0.5, a VPQ true positive in this frame), else
    ``merged`` (it also covers another instance of the class), ``partial`` (it covers under half of the
    instance), ``missed`` (no component of the class overlaps it) or ``other`` (a component too large,
    spilling onto the background). ``segments`` (an instance head's) replace the cut components."""
    from vsda_deploy.panoptic import thing_segments

    components, classes, areas = thing_segments(semantic, things, segments)
    component_class = np.asarray([-1, *classes])
    fates: dict[int, Counter] = {}
    for cls in things:
        of_class = (gt_semantic == cls) & (gt_instance > 0)
        comp = components[of_class]
        comp[component_class[comp] != cls] = 0  # only components of the instance's class count
        (inst, comp), overlap = np.unique(np.stack([gt_instance[of_class], comp]), axis=1, return_counts=True)
        fates[cls] = Counter(_fate(i, inst, comp, overlap, areas) for i in np.unique(inst)
                             if overlap[inst == i].sum() >= min_area)
    return fates


def _fate(i: int, inst: np.ndarray, comp: np.ndarray, overlap: np.ndarray, areas: list[int]) -> str:
    """Return the fate of instance ``i`` from the (instance, component, overlap) table of its class."""
    mine = inst == i
    area = int(overlap[mine].sum())
    hits = mine & (comp > 0)
    if not hits.any():
        return "missed"
    k = int(np.argmax(np.where(hits, overlap, -1)))
    best, inter = int(comp[k]), int(overlap[k])
    if inter / (area + areas[best - 1] - inter) > 0.5:
        return "match"
    if np.any((comp == best) & ~mine):
        return "merged"
    return "partial" if inter < area / 2 else "other"


def thing_fates(predict: Callable[[np.ndarray], Prediction] | None, gt_root: str | Path,
                label_space: str = "viper15", min_area: int = LARGE_AREA) -> dict[str, dict[str, int]]:
    """Return ``{thing class: {fate: count}}`` (see ``instance_fates``) over the labelled val frames,
    ``predict(rgb) -> train-id map`` being the model; None scores the ground-truth semantics."""
    from vsda_deploy import cityscapes_vps as vps
    from vsda_deploy.evaluation import list_gt
    from vsda_deploy.labels import get_label_space

    space = get_label_space(label_space)
    totals: dict[int, Counter] = {c: Counter() for c in sorted(space.things)}
    for video in list_gt(gt_root, "val", label_space).values():
        for frame in video:
            semantic, instance = frame.read()
            pred, segments = (semantic, None) if predict is None else split_prediction(
                predict(vps.read_rgb_png(frame.image)))
            for cls, fates in instance_fates(semantic, instance, pred, sorted(space.things), min_area,
                                             segments).items():
                totals[cls] += fates
    return {space.classes[c]: {f: totals[c][f] for f in FATES} for c in totals if totals[c]}


def source_thing_pq(predict: Callable[[np.ndarray], Prediction], viper_root: str | Path,
                    split: str = "val") -> dict[str, Any]:
    """Return ``{frames, pq_things, per_class}`` (image PQ, percent): ``predict(rgb) -> VIPER15 map``
    on the labelled frames of a VIPER split that have an ``inst`` PNG, each frame its own window
    (k = 0), components as the panoptic step cuts them (or the predictor's thing segments). Thing
    pixels without an instance id are one crowd segment of their class, the ego vehicle is void
    (``ViperDataset``'s labels)."""
    from vsda_deploy.data.viper import ViperDataset
    from vsda_deploy.labels import VIPER15
    from vsda_deploy.panoptic import thing_segments
    from vsda_deploy.vpq import VideoPanopticQuality

    things = sorted(VIPER15.things)
    ds = ViperDataset(viper_root, split, labels=True, pad_start=True)
    pq = VideoPanopticQuality(VIPER15.num_classes, things, window_lengths=(1,), evaluated=VIPER15.evaluated)
    frames = 0
    for rec in ds.records:
        if rec.label_path is None:
            continue
        semantic, extra = ds.load_label(rec)
        if "instance_raw" not in extra:
            continue
        pred, segments = split_prediction(predict(ds.read_frame(rec.path)))
        pred = pred.astype(np.uint8)
        components = thing_segments(pred, things, segments)[0]
        pq.reset()
        pq.update(semantic, extra["instance_raw"], pred, components)
        frames += 1
    result = pq.result()
    per_class = result.per_class(0)
    return {"frames": frames, "pq_things": result.vpq("things"),
            "per_class": {VIPER15.classes[c]: float(per_class[c]) for c in things if not np.isnan(per_class[c])}}


def colour_gap(data: str | Path) -> float:
    """Return the colour check of a synthetic benchmark: target-fitted minus source-fitted pixel accuracy."""
    from vsda_train.synth import colour_baseline

    return float(colour_baseline.run(Path(data))["gap_pixel_accuracy"])


def mean_std(values: list[float]) -> tuple[float, float]:
    """Return the mean and the sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _goal(goal: str, target: str, measured: str, met: bool) -> dict[str, Any]:
    return {"goal": goal, "target": target, "measured": measured, "met": bool(met)}


def assess(summary: dict) -> list[dict[str, Any]]:
    """Return the goals of the table, each ``{goal, target, measured, met}``, from a summary's rows
    and checks (rows missing from the summary leave their goals out)."""
    rows, checks = summary["rows"], summary.get("checks", {})
    miou = {r: statistics.fmean(v["miou"]) for r, v in rows.items()}
    goals = []
    if "oracle" in rows:
        oracle = rows["oracle"]
        goals.append(_goal("oracle mIoU", ">= 50", f"{miou['oracle']:.1f}", miou["oracle"] >= 50))
        per_class = {c: statistics.fmean([seed[c] for seed in oracle["iou"]]) for c in oracle["iou"][0]}
        worst = min(per_class, key=per_class.get)
        goals.append(_goal("every class's oracle IoU", ">= 10", f"{per_class[worst]:.1f} ({worst})",
                           per_class[worst] >= 10))
        things = statistics.fmean(oracle["vpq_things"])
        ceiling = checks.get("panoptic_ceiling", {}).get("vpq_things")
        note = f" (ceiling {ceiling:.1f})" if ceiling is not None else ""
        goals.append(_goal("oracle VPQ-things", ">= 20", f"{things:.1f}{note}", things >= 20))
        if "source_only" in rows:
            gap = miou["oracle"] - miou["source_only"]
            goals.append(_goal("source-only under the oracle", ">= 20 points", f"{gap:.1f}", gap >= 20))
    if "colour_gap" in checks:
        goals.append(_goal("colour check (pixel accuracy gap)", ">= 20 points", f"{checks['colour_gap']:.1f}",
                           checks["colour_gap"] >= 20))
    spread = {r: mean_std(v["miou"])[1] for r, v in rows.items()}
    if len(summary["seeds"]) > 1:
        widest = max(spread, key=spread.get)
        goals.append(_goal("std of every row", "<= 2 mIoU", f"{spread[widest]:.1f} ({widest})", spread[widest] <= 2))
    adapted = [r for r in PHASE2 if r in rows]
    best = max(adapted, key=miou.get) if adapted else None
    if best and {"source_only", "oracle"} <= set(rows):
        closed = (miou[best] - miou["source_only"]) / (miou["oracle"] - miou["source_only"])
        goals.append(_goal("best phase 2 closes the gap", ">= 70 %", f"{100 * closed:.0f} % ({best})", closed >= .7))
    for video, image in TWINS.items():  # a lead is judged against the seed spread: needs 2+ seeds
        if {video, image} <= set(rows) and len(summary["seeds"]) > 1:
            lead, noise = miou[video] - miou[image], max(spread[video], spread[image])
            goals.append(_goal(f"{video} beats its image twin {image}", "> seed std",
                               f"{lead:+.1f} vs std {noise:.1f}", lead > noise))
    if best and "vat" in rows:
        d_miou = miou[best] - miou["vat"]
        d_things = statistics.fmean(rows[best]["vpq_things"]) - statistics.fmean(rows["vat"]["vpq_things"])
        goals.append(_goal("VPQ-things moves with mIoU (best phase 2 vs VAT)", "same sign",
                           f"mIoU {d_miou:+.1f}, VPQ-things {d_things:+.1f}", d_miou * d_things > 0))
    return goals


def markdown(goals: list[dict[str, Any]]) -> str:
    """Return the goals as a Markdown table."""
    lines = ["| goal | target | measured | |", "| --- | --- | --- | --- |"]
    lines += [f"| {g['goal']} | {g['target']} | {g['measured']} | {'met' if g['met'] else 'missed'} |" for g in goals]
    return "\n".join(lines)
