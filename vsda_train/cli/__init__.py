"""`vsda-train`: one verb per job. Each verb lives in its own module; this file registers them."""

import typer

from vsda_train.cli import evaluate, flow, phases, report, synth

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train, adapt (VAT, VST) and evaluate video segmenters; generate the synthetic benchmark.",
)
app.command("synth")(synth.synth)
app.command("eval")(evaluate.evaluate)
app.command("source")(phases.source)
app.command("vat")(phases.vat)
app.command("vst")(phases.vst)
app.command("pseudo")(phases.pseudo)
app.command("adapt")(phases.adapt)
app.command("flow")(flow.flow)
app.command("report")(report.report)
app.command("colour-baseline")(report.colour_baseline)
app.command("picture")(report.picture)
