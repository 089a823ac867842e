"""`vsda-train eval --pred PRED_DIR --gt cityscapes-vps:ROOT`: mIoU, VPQ and TC of a prediction folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from vsda_deploy.cityscapes_vps import dump_json
from vsda_deploy.evaluation import evaluate_folder, parse_gt_spec, render_result
from vsda_deploy.panoptic import DEFAULT_LINK_IOU, DEFAULT_MIN_AREA


def evaluate(
    pred: Path = typer.Option(..., "--pred", help="prediction folder: pan_pred/ + pred.json, or one "
                              "VIPER15 train-id PNG per frame named {stem}_leftImg8bit.png"),
    gt: str = typer.Option(..., "--gt", help="ground truth, cityscapes-vps:ROOT"),
    split: str = typer.Option("val", "--split", help="split folder under ROOT"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the scores to this JSON file"),
    min_area: int = typer.Option(DEFAULT_MIN_AREA, "--min-area",
                                 help="label PNGs: thing components below this many pixels get no instance"),
    link_iou: float = typer.Option(DEFAULT_LINK_IOU, "--link-iou",
                                   help="label PNGs: mask IoU needed to carry an instance id to the next frame"),
) -> None:
    """Score predictions against Cityscapes-VPS ground truth: mIoU, VPQ (k=0,5,10,15) and TC."""
    try:
        result = evaluate_folder(pred, parse_gt_spec(gt), split, min_area=min_area, link_iou=link_iou)
        if json_out is not None:
            dump_json(json_out, result.to_json())
    except (ValueError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    Console().print(render_result(result))
    if json_out is not None:
        Console().print(f"wrote {json_out}")
