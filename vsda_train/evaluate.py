"""Scoring a model or checkpoint with the runtime's own metric code (``vsda_deploy``).

Cityscapes-VPS specs go through :func:`vsda_deploy.evaluation.evaluate_predictor` — the
same code ``vsda-train eval --pred`` and ``vsda-infer`` use — giving mIoU, VPQ and TC.
Other labelled specs (Cityscapes-Seq, VIPER, SYNTHIA-Seq) give mIoU and per-class IoU.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vsda_deploy.instance_grouping import Prediction, group_instances, split_prediction
from vsda_deploy.labels import VIPER15, get_label_space
from vsda_deploy.metrics import ConfusionMatrix
from vsda_deploy.panoptic import DEFAULT_MIN_AREA
from vsda_deploy.preprocess import IMAGENET, Normalization, preset, resize_frame
from vsda_train.checkpoint import CheckpointError, load_checkpoint
from vsda_train.models import create_model
from vsda_train.transforms import normalize


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Return ``(model in eval mode, checkpoint dict)`` rebuilt from a vsda checkpoint."""
    ckpt = load_checkpoint(path)
    conf = dict(ckpt.get("model_config") or {})
    if "name" not in conf:
        raise CheckpointError(f"{path}: checkpoint has no model_config; cannot rebuild the model")
    name, num_classes = conf.pop("name"), conf.pop("num_classes")
    model = create_model(name, num_classes, **conf)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {name} ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), ckpt


def checkpoint_inputs(ckpt: dict[str, Any]) -> tuple[tuple[int, int] | None, Normalization]:
    """Return ``(eval size or None, input normalisation)`` a checkpoint's model expects."""
    size = ckpt.get("eval_size")
    model_cfg = (ckpt.get("config") or {}).get("model") or {}
    return (tuple(size) if size else None), preset(model_cfg.get("preprocess", "imagenet"))


def predictor(model: nn.Module, device: str | torch.device = "cpu", size: tuple[int, int] | None = None,
              norm: Normalization = IMAGENET, things: Iterable[int] = VIPER15.things
              ) -> Callable[[np.ndarray], Prediction]:
    """Return ``predict(rgb uint8 HxWx3) -> train-id map (H, W) uint8`` for a segmenter.

    The frame is resized to ``size`` (the scale the model was trained at; None: as given), and the
    logits are resized back to the frame bilinearly before the argmax, as ``vsda-infer`` does. A model
    with an instance head returns ``(train-id map, thing segments)``: its ``things`` pixels grouped
    by the predicted centres and offsets (``vsda_deploy.instance_grouping``).
    """
    device = torch.device(device)
    with_instances = getattr(model, "instance_head", None) is not None

    @torch.no_grad()
    def predict(image: np.ndarray) -> Prediction:
        model.eval()
        x = normalize(resize_frame(image, size), norm).unsqueeze(0).to(device)
        logits, instances = model.forward_instances(x) if with_instances else (model(x), None)
        semantic = _at(logits, image.shape[:2]).argmax(1)[0].to(torch.uint8).cpu().numpy()
        if instances is None:
            return semantic
        instances = _at(instances, image.shape[:2])[0].cpu()
        scale = torch.tensor([image.shape[0] / x.shape[-2], image.shape[1] / x.shape[-1]])  # offsets in frame pixels
        offset = (instances[1:] * scale[:, None, None]).numpy()
        heat = instances[0].sigmoid().numpy()  # the head predicts the centre heatmap's logits
        return semantic, group_instances(semantic, heat, offset, things, DEFAULT_MIN_AREA)

    return predict


def _at(maps: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Return (N, C, H, W) ``maps`` bilinearly resized to ``shape`` (unchanged when it already is)."""
    if maps.shape[-2:] == shape:
        return maps.float()
    return F.interpolate(maps.float(), size=shape, mode="bilinear", align_corners=False)


def checkpoint_predictor(path: str | Path, device: str | torch.device = "cpu"
                         ) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """Return ``(predict, checkpoint dict)``: the checkpoint's model predicting at its eval size with its
    input normalisation, as its own evaluation ran."""
    model, ckpt = load_model(path, device)
    return predictor(model, device, *checkpoint_inputs(ckpt)), ckpt


def evaluate_model(model: nn.Module, spec: str, split: str = "val", label_space: str = "viper15",
                   device: str | torch.device = "cpu", size: tuple[int, int] | None = None,
                   norm: Normalization = IMAGENET) -> dict[str, Any]:
    """Return the eval JSON (``miou``, ``iou``, ``vpq``…, percent) of ``model`` on a labelled spec.

    The model predicts at ``size`` and is scored against the labels at their full resolution.
    """
    kind, _, root = spec.partition(":")
    predict = predictor(model, device, size, norm, get_label_space(label_space).things)
    if kind == "cityscapes-vps":
        from vsda_deploy.evaluation import evaluate_predictor

        return evaluate_predictor(predict, root, split, label_space=label_space).to_json()
    return _miou_only(predict, spec, split, label_space)


def _miou_only(predict: Callable, spec: str, split: str, label_space: str) -> dict[str, Any]:
    from vsda_deploy.data import build_dataset

    space = get_label_space(label_space)
    ds = build_dataset(spec, split=split, labels=True, label_space=label_space)
    cm = ConfusionMatrix(space.num_classes)
    for i in range(len(ds)):
        s = ds[i]
        cm.update(split_prediction(predict(s.frame))[0], s.label)
    iou = cm.iou()
    keep = list(space.eval_classes)
    return {
        "miou": None if np.isnan(cm.miou(keep)) else float(cm.miou(keep)),
        "iou": {space.classes[c]: (None if np.isnan(iou[c]) else float(iou[c])) for c in keep},
        "vpq": None, "vpq_things": None, "vpq_stuff": None, "vpq_k": None, "tc": None,
        "frames": len(ds), "notes": [f"{spec.partition(':')[0]}: mIoU only (VPQ needs Cityscapes-VPS)"],
    }


def write_eval(result: dict[str, Any], path: str | Path) -> None:
    """Write the eval JSON."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1))


def evaluate_run(run: Any) -> dict[str, Any]:
    """Score a finished run's last model on ``data.val``; write ``runs/NAME/eval.json`` and print it."""
    cfg = run.cfg
    result = evaluate_model(run.model, cfg.data.val, cfg.data.val_split, cfg.data.label_space, run.device,
                            cfg.data.predict_size, run.norm)
    result["checkpoint"] = str(run.out / "last.pt")
    result["selection"] = "last checkpoint (no model selection on target labels)"
    result["eval_size"] = list(cfg.data.predict_size) if cfg.data.predict_size else None
    write_eval(result, run.out / "eval.json")
    print_summary(result, f"{run.phase} · {cfg.run.name}")
    return result


REPORT_METRICS = (("mIoU", "miou"), ("VPQ", "vpq"), ("VPQ things", "vpq_things"), ("VPQ stuff", "vpq_stuff"),
                  ("TC", "tc"))


def report_table(runs: dict[str, dict[str, Any]], title: str = "validation split, %") -> Any:
    """Return a Rich table of the eval JSON of several runs, one row each."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("run")
    for name, _ in REPORT_METRICS:
        table.add_column(name, justify="right")
    for name, res in runs.items():
        table.add_row(name, *("-" if res.get(k) is None else f"{res[k]:.1f}" for _, k in REPORT_METRICS))
    return table


def print_summary(result: dict[str, Any], title: str) -> None:
    """Print a one-table summary (mIoU, VPQ, TC) with Rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("mIoU", "VPQ", "VPQ things", "VPQ stuff", "TC"):
        table.add_column(col, justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    table.add_row(*(fmt(result.get(k)) for k in ("miou", "vpq", "vpq_things", "vpq_stuff", "tc")))
    Console().print(table)
