"""`vsda-train eval` (being built)."""

import typer


def evaluate(pred: str = typer.Option(..., help="prediction folder")) -> None:
    """Score predictions against ground truth (being built)."""
    typer.echo("vsda-train eval: not built yet", err=True)
    raise typer.Exit(2)
