"""`vsda-train flow DATASET` (being built)."""

import typer


def flow(dataset: str = typer.Argument(..., help="dataset spec, e.g. viper:/data/viper")) -> None:
    """Precompute the optical-flow cache of a dataset (being built)."""
    typer.echo("vsda-train flow: not built yet", err=True)
    raise typer.Exit(2)
