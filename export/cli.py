"""`vsda-export CKPT`: checkpoint -> ONNX -> TensorRT (not built yet)."""

import typer

app = typer.Typer(add_completion=False, help="Export a vsda checkpoint to ONNX / TensorRT.")


@app.command()
def main(checkpoint: str = typer.Argument(..., help="a vsda checkpoint (.pt)")) -> None:
    """Export a checkpoint (not built yet)."""
    typer.echo("vsda-export: not built yet (see the export issue)", err=True)
    raise typer.Exit(2)
