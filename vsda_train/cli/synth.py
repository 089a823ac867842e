"""`vsda-train synth OUT` (being built)."""

import typer


def synth(out: str = typer.Argument(..., help="output folder")) -> None:
    """Generate the synthetic sim-to-real video benchmark (being built)."""
    typer.echo("vsda-train synth: not built yet", err=True)
    raise typer.Exit(2)
