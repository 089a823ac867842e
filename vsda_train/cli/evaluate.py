"""`vsda-train eval`: mIoU, VPQ and TC of a prediction folder, or of a checkpoint on a dataset.

    vsda-train eval --pred PRED_DIR --gt cityscapes-vps:ROOT [--split val] [--label-space viper15] [--json OUT.json]
    vsda-train eval CKPT --data cityscapes-vps:ROOT [--split val] [--json OUT.json]
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from vsda_deploy.cityscapes_vps import dump_json
from vsda_deploy.errors import VsdaError
from vsda_deploy.evaluation import evaluate_folder, parse_gt_spec, render_result
from vsda_deploy.labels import LABEL_SPACES
from vsda_deploy.options import OptionError
from vsda_deploy.panoptic import DEFAULT_LINK_IOU, DEFAULT_MIN_AREA, DEFAULT_SPLIT_RATIO


def evaluate(
    checkpoint: Path | None = typer.Argument(None, help="a vsda checkpoint (.pt) to score on --data"),
    data: str | None = typer.Option(None, "--data", help="with CKPT: labelled dataset spec, e.g. "
                                    "cityscapes-vps:ROOT (mIoU, VPQ, TC) or cityscapes-seq:ROOT (mIoU)"),
    pred: Path | None = typer.Option(None, "--pred", help="prediction folder: pan_pred/ + pred.json, or one "
                                     "train-id PNG per frame named after it ({image_id}*.png or "
                                     "{city}_{seq}_{frame}*.png)"),
    gt: str | None = typer.Option(None, "--gt", help="with --pred: ground truth, cityscapes-vps:ROOT"),
    split: str = typer.Option("val", "--split", help="split folder under ROOT"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the scores to this JSON file"),
    device: str = typer.Option("cpu", "--device", help="with CKPT: cpu | cuda"),
    min_area: int = typer.Option(DEFAULT_MIN_AREA, "--min-area", min=0,
                                 help="label PNGs: thing components below this many pixels get no instance"),
    link_iou: float = typer.Option(DEFAULT_LINK_IOU, "--link-iou",
                                   help="label PNGs: mask IoU needed to carry an instance id to the next frame"),
    split_ratio: float = typer.Option(DEFAULT_SPLIT_RATIO, "--split-ratio",
                                      help="label PNGs: cut thing components between cores this deep (a fraction "
                                      "of their deepest point's distance to the background; 0: no cut)"),
    label_space: str = typer.Option("viper15", "--label-space", help="with --pred: the space scores are computed "
                                    "in (viper15 | synthia12 | cityscapes19; label PNGs hold its train ids)"),
) -> None:
    """Score predictions (--pred/--gt) or a checkpoint (CKPT --data): mIoU, VPQ (k=0,5,10,15) and TC."""
    if (checkpoint is None) == (pred is None):
        typer.echo("error: give either CKPT --data SPEC or --pred DIR --gt SPEC", err=True)
        raise typer.Exit(2)
    if label_space not in LABEL_SPACES:
        typer.echo(f"error: --label-space {label_space!r}: choose from {', '.join(LABEL_SPACES)}", err=True)
        raise typer.Exit(2)
    if not 0 < link_iou <= 1:
        typer.echo(f"error: --link-iou {link_iou}: must be in (0, 1]", err=True)
        raise typer.Exit(2)
    if not 0 <= split_ratio < 1:
        typer.echo(f"error: --split-ratio {split_ratio}: must be in [0, 1)", err=True)
        raise typer.Exit(2)
    try:
        if checkpoint is not None:
            if not data:
                raise OptionError("CKPT needs --data SPEC (e.g. cityscapes-vps:data/synth/target)")
            _score_checkpoint(checkpoint, data, split, json_out, device)
            return
        if not gt:
            raise OptionError("--pred needs --gt cityscapes-vps:ROOT")
        result = evaluate_folder(pred, parse_gt_spec(gt), split, min_area=min_area, link_iou=link_iou,
                                 label_space=label_space, split_ratio=split_ratio)
        if json_out is not None:
            dump_json(json_out, result.to_json())
    except (VsdaError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    Console().print(render_result(result))
    if json_out is not None:
        Console().print(f"wrote {json_out}")


def _score_checkpoint(checkpoint: Path, data: str, split: str, json_out: Path | None, device: str) -> None:
    from vsda_train.evaluate import checkpoint_inputs, evaluate_model, load_model, predictor, print_summary

    model, ckpt = load_model(checkpoint, device)
    size, norm = checkpoint_inputs(ckpt)
    if data.startswith("cityscapes-vps:"):
        from vsda_deploy.evaluation import evaluate_predictor

        result = evaluate_predictor(predictor(model, device, size, norm), parse_gt_spec(data), split,
                                    label_space=ckpt.get("label_space", "viper15"))
        Console().print(render_result(result))
        scores = result.to_json()
    else:
        scores = evaluate_model(model, data, split, ckpt.get("label_space", "viper15"), device, size, norm)
        print_summary(scores, f"{checkpoint} on {data}")
    if json_out is not None:
        dump_json(json_out, {**scores, "checkpoint": str(checkpoint)})
        Console().print(f"wrote {json_out}")
