"""The ``smoothing`` suite: choose ``vsda-infer``'s smoothing on target-**train** videos, then check it once on val.

Every (mode, alpha) streams the labelled target-train videos through ``run_inference`` exactly as
the CLI does. The chosen setting is the one with the highest TC whose mIoU is at most
``MIOU_BUDGET`` below ``--smooth none`` on train; only then are it and ``none`` scored on val, which
is never used to choose. The synthetic benchmark's target-train labels are its ``oracle`` tree.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.suite import Column, Row, SuiteOptions, SuiteResult, new_result

MIOU_BUDGET = 0.5  # smoothing may cost at most this much mIoU (points)
ALPHAS = (0.3, 0.45, 0.6, 0.75, 0.85)
COLUMNS = [Column("alpha", "alpha", "{:.2f}"), Column("miou", "mIoU", "{:.2f}"), Column("tc", "TC"),
           Column("vpq", "VPQ")]


def score(model: str, spec: str, split: str, mode: str, alpha: float) -> dict[str, float]:
    """Return mIoU, TC and VPQ of one smoothing setting on a labelled split, as vsda-infer streams it."""
    from vsda_deploy.infer import InferOptions, run_inference

    report = run_inference(InferOptions(spec, Path(model), smooth=mode, alpha=alpha, split=split, warmup=0)).report
    m = report["metrics"]
    return {"alpha": alpha, "miou": m["miou"], "tc": m["tc"], "vpq": m["vpq"]}


def choose(rows: dict[str, dict[str, float]]) -> str:
    """Return the key of the row with the best TC within the mIoU budget of ``none`` (``none`` if none fits)."""
    floor = rows["none"]["miou"] - MIOU_BUDGET
    fit = [k for k, r in rows.items() if k != "none" and r["miou"] >= floor]
    return max(fit, key=lambda k: rows[k]["tc"]) if fit else "none"


def run(opts: SuiteOptions, train: str, alphas: tuple[float, ...] = ALPHAS) -> SuiteResult:
    """Sweep mode x alpha on ``train``; score ``none`` and the choice on ``opts.data`` (val)."""
    grid = [("none", 0.0)] + [(m, a) for m in ("ema", "flow") for a in alphas]
    scored = {("none" if m == "none" else f"{m} {a:.2f}"): score(opts.model, train, "train", m, a) for m, a in grid}
    best = choose(scored)
    mode, alpha = [*best.split(), "0"][:2]
    result = new_result("smoothing", COLUMNS, {**opts.settings(), "train": train, "miou_budget": MIOU_BUDGET})
    result.extra["name_header"] = "split · setting"
    for key, values in scored.items():
        result.rows.append(Row(f"train · {key}", reason="chosen" if key == best else "", values=values))
    none = score(opts.model, opts.data, "val", "none", 0.0)
    chosen = none if best == "none" else score(opts.model, opts.data, "val", mode, float(alpha))
    result.rows += [Row("val · none", values=none)] + ([Row(f"val · {best}", values=chosen)] if best != "none" else [])
    result.extra["chosen"] = {"mode": mode, "alpha": float(alpha)}
    result.notes.append(f"chosen on train: {best}; on val mIoU {chosen['miou'] - none['miou']:+.2f}, "
                        f"TC {chosen['tc'] - none['tc']:+.1f} against no smoothing")
    return result
