"""Run one training phase with the test hooks (also under torchrun): a SIGKILL after a checkpoint, and
each rank's parameter checksum after the last one.

    python tests/train/phase_runner.py PHASE CONFIG NAME [--init CKPT] [--resume] [--kill-after N]
                                       [--checksums DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path


def main() -> None:
    from vsda_train.config import for_phase, load_config
    from vsda_train.phases import train_source, train_vat, train_vst

    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=("source", "vat", "vst"))
    ap.add_argument("config")
    ap.add_argument("name")
    ap.add_argument("--init")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--kill-after", type=int)
    ap.add_argument("--checksums", type=Path)
    args = ap.parse_args()
    cfg = for_phase(load_config(args.config, [f"run.name={args.name}"]), args.phase)

    def hook(run) -> None:
        if args.kill_after is not None and run.it == args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if args.checksums is not None and run.it == cfg.optim.iters:
            total = float(sum(p.detach().double().abs().sum() for p in run.model.parameters()))
            args.checksums.mkdir(parents=True, exist_ok=True)
            (args.checksums / f"rank{run.info.rank}.json").write_text(json.dumps(total))

    if args.phase == "source":
        train_source(cfg, resume=args.resume, on_checkpoint=hook)
    elif args.phase == "vat":
        train_vat(cfg, init=args.init, resume=args.resume, on_checkpoint=hook)
    else:
        train_vst(cfg, init=args.init, resume=args.resume, on_checkpoint=hook)


if __name__ == "__main__":
    main()
