"""Training verbs (not built yet: see the training issue)."""

import typer


def _not_built(verb: str) -> None:
    typer.echo(f"vsda-train {verb}: not built yet (see the training issue)", err=True)
    raise typer.Exit(2)


def source() -> None:
    """Supervised training on source clips (not built yet)."""
    _not_built("source")


def vat() -> None:
    """Phase 1: source loss + video adversarial training (not built yet)."""
    _not_built("vat")


def vst() -> None:
    """Phase 2: video self-training on target clips (not built yet)."""
    _not_built("vst")

