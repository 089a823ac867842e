"""Can colour alone solve the synthetic benchmark? A per-pixel colour classifier, two ways.

Nearest class mean in CIE Lab, fitted once on the labelled source frames (VIPER tree) and
once on the target-train labels (the oracle tree, ``cityscapes-seq``); both are scored on the labelled
target-val frames (pixel accuracy and mIoU over one confusion matrix). The benchmark is
fair only if the source-fitted classifier is far behind the target-fitted one: colour
must not carry across domains on its own.

    vsda-train colour-baseline data/synth [--pred-out DIR] [--json FILE]

``--pred-out`` writes the source-fitted predictions of target-val, one uint8 train-id PNG
per labelled frame named like its ``img/`` file (``{image_id}_newImg8bit.png`` or ``_leftImg8bit.png``), which
``vsda-train eval --pred DIR --gt cityscapes-vps:DATA/target`` scores.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.data.cityscapes_seq import CityscapesSeqDataset
from vsda_deploy.data.viper import viper_to_train
from vsda_deploy.evaluation import list_gt
from vsda_deploy.labels import IGNORE_INDEX, VIPER15
from vsda_deploy.metrics import ConfusionMatrix

C = VIPER15.num_classes


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """Return the (H*W, 3) CIE Lab values (L in 0..100) of an RGB uint8 image."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2Lab).reshape(-1, 3)


def read_rgb(path: Path) -> np.ndarray:
    """Return an RGB uint8 image; OSError names the file."""
    return vps.read_rgb_png(path)


def read_class_ids(path: Path) -> np.ndarray:
    """Return a single-channel VIPER class-id PNG; OSError names the file."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise OSError(f"{path}: missing, unreadable or not a single-channel class-id PNG")
    return raw


def viper_frames(root: Path, split: str = "train") -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    """Yield ``(rgb, train-id label, name)`` of every labelled frame of a VIPER tree (ego vehicle ignored)."""
    img_dir = root / split / "img"
    frames = sorted(img_dir.glob("*/*.png")) + sorted(img_dir.glob("*/*.jpg"))
    if not frames:
        raise FileNotFoundError(f"{img_dir}: no VIPER frames (*/SSS_NNNNN.png|jpg)")
    for img in frames:
        cls = root / split / "cls" / img.parent.name / f"{img.stem}.png"
        yield read_rgb(img), viper_to_train(read_class_ids(cls), cls), img.name


def vps_frames(root: Path, split: str) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    """Yield ``(rgb, train-id label, img/ file name)`` of a Cityscapes-VPS split's labelled frames."""
    for frames in list_gt(root, split).values():
        for g in frames:
            yield read_rgb(g.image), g.read()[0], g.image.name


def oracle_frames(root: Path, split: str = "train") -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    """Yield ``(rgb, train-id label, name)`` of every labelled frame of the oracle (Cityscapes-Seq) tree."""
    clips = CityscapesSeqDataset(root, split, pad_start=True)
    for i in range(len(clips)):
        sample = clips[i]
        yield sample.frame, sample.label, sample.meta["name"]


def fit_class_means(frames: Iterator[tuple[np.ndarray, np.ndarray, str]]) -> tuple[np.ndarray, int]:
    """Return the (C, 3) Lab mean of each class (NaN for absent classes) and the frame count."""
    sums, counts, n = np.zeros((C, 3)), np.zeros(C), 0
    for rgb, label, _ in frames:
        lab, y = to_lab(rgb), label.ravel()
        valid = y != IGNORE_INDEX
        for ch in range(3):
            sums[:, ch] += np.bincount(y[valid], lab[valid, ch], minlength=C)[:C]
        counts += np.bincount(y[valid], minlength=C)[:C]
        n += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], n


def predict(means: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Return the (H, W) uint8 nearest-class-mean labels of an RGB frame."""
    lab = to_lab(rgb)
    dist = ((lab[:, None, :] - means[None]) ** 2).sum(-1)
    dist[:, np.isnan(means).any(1)] = np.inf
    return dist.argmin(1).astype(np.uint8).reshape(rgb.shape[:2])


def scores(cm: ConfusionMatrix) -> dict:
    """Return pixel accuracy, mIoU (classes present in gt or prediction) and per-class IoU, in percent."""
    iou = cm.iou()
    return {
        "pixel_accuracy": round(cm.pixel_accuracy(), 2),
        "miou": round(cm.miou(), 2),
        "iou": {n: (None if np.isnan(v) else round(float(v), 2)) for n, v in zip(VIPER15.classes, iou)},
    }


def run(data: Path, pred_out: Path | None = None) -> dict:
    """Return the source-fitted vs target-fitted figures on target-val of the benchmark at ``data``."""
    start = time.perf_counter()
    fitted = {"source_fitted": fit_class_means(viper_frames(data / "source")),
              "target_fitted": fit_class_means(oracle_frames(data / "oracle"))}
    conf = {k: ConfusionMatrix(C) for k in fitted}
    val_frames = 0
    for rgb, gt, name in vps_frames(data / "target", "val"):
        val_frames += 1
        for k, (means, _) in fitted.items():
            pred = predict(means, rgb)
            conf[k].update(pred, gt)
            if pred_out is not None and k == "source_fitted":
                pred_out.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(pred_out / name), pred):
                    raise OSError(f"{pred_out}: cannot write predictions")
    result = {k: scores(c) for k, c in conf.items()}
    result["gap_pixel_accuracy"] = round(result["target_fitted"]["pixel_accuracy"]
                                         - result["source_fitted"]["pixel_accuracy"], 2)
    result["gap_miou"] = round(result["target_fitted"]["miou"] - result["source_fitted"]["miou"], 2)
    result["frames"] = {"source": fitted["source_fitted"][1], "target_train": fitted["target_fitted"][1],
                        "target_val": val_frames}
    result["data"] = str(data)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def print_table(result: dict, console: Console) -> None:
    """Print pixel accuracy, mIoU and per-class IoU of both classifiers, one row per figure."""
    table = Table(title="Nearest class mean in CIE Lab, scored on target-val (%)")
    table.add_column("")
    table.add_column("fitted on source", justify="right")
    table.add_column("fitted on target", justify="right")
    src, tgt = result["source_fitted"], result["target_fitted"]
    table.add_row("pixel accuracy", f"{src['pixel_accuracy']:.1f}", f"{tgt['pixel_accuracy']:.1f}")
    table.add_row("mIoU", f"{src['miou']:.1f}", f"{tgt['miou']:.1f}", end_section=True)
    for name in VIPER15.classes:
        table.add_row(name, *("-" if r["iou"][name] is None else f"{r['iou'][name]:.1f}" for r in (src, tgt)))
    console.print(table)
    console.print(f"source-fitted loses {result['gap_pixel_accuracy']:.1f} points of pixel accuracy and "
                  f"{result['gap_miou']:.1f} of mIoU against target-fitted ({result['seconds']} s)")
