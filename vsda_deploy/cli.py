"""`vsda-infer SOURCE`: streaming segmentation (not built yet)."""

import typer

app = typer.Typer(add_completion=False, help="Streaming video segmentation at the edge.")


@app.command()
def main(source: str = typer.Argument(..., help="camera0, a file, a folder, an RTSP URL")) -> None:
    """Segment a video stream (not built yet)."""
    typer.echo("vsda-infer: not built yet (see the deploy issue)", err=True)
    raise typer.Exit(2)
