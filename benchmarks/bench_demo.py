"""Wall time of one 128x128 image (mask + text, collaborative) on the demo model with the app's
default sampler settings (Generate: DDIM, 25 steps, eta 1; target <= 1.2 s on 2 CPU cores).

    python benchmarks/bench_demo.py [--model demo|DIR] [--sampler ddim --steps 50] [--repeats 5]
                                    [--plain | --compile] [--random]

`--plain` skips `model.optimize_for` (no channels-last); `--compile` also wraps every UNet in
`torch.compile` (not what loading does: measured here only, the first image includes compiling).

Uses the trained embedded model when present, else random weights of the same architecture (the
time does not depend on the values).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from collab.pipeline import generate
from collab_app.limits import GENERATE_STEPS, SAMPLER


def load(name: str, random: bool = False):
    from collab.registry import load_model

    try:
        if random:
            raise FileNotFoundError
        return load_model(name, optimize=False), "trained weights"
    except FileNotFoundError:
        from collab.checkpoint import _finish
        from collab.config import load_config
        from collab.model import CollaborativeModel

        model = CollaborativeModel(load_config("demo")).eval().requires_grad_(False)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.02)
        vocab = Path(__file__).resolve().parents[1] / "tests/fixtures/reference/bert-base-uncased-vocab.txt"
        return _finish(model, vocab, "cpu", torch.float32), "random weights (no trained demo checkpoint found)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--steps", type=int, default=GENERATE_STEPS.default)
    ap.add_argument("--sampler", default=SAMPLER, help=f"default: the app's ({SAMPLER})")
    ap.add_argument("--random", action="store_true", help="random weights of the shipped demo config")
    ap.add_argument("--repeats", type=int, default=5)
    speed = ap.add_mutually_exclusive_group()
    speed.add_argument("--plain", action="store_true", help="eager, without optimize_for")
    speed.add_argument("--compile", action="store_true", help="optimize_for, then torch.compile on every UNet")
    args = ap.parse_args()
    model, what = load(args.model, args.random)
    if not args.plain:
        model.optimize_for("cpu")
    if args.compile:
        for part in (model.collaborators, model.diffusers):
            for name in list(part.keys()):
                part[name] = torch.compile(part[name], dynamic=False)
    mask = np.zeros((128, 128), np.uint8)
    mask[20:110, 30:98] = 1
    conds = {"text": "This man has beard of medium length. He is in his thirties.", "mask": mask}
    times = []
    for i in range(args.repeats + 1):
        t0 = time.perf_counter()
        generate(model, conds, steps=int(args.steps), sampler=args.sampler, eta=1.0, seed=i)
        times.append(time.perf_counter() - t0)
    mode = "plain" if args.plain else "optimize_for + torch.compile" if args.compile else "optimize_for"
    print(f"demo model ({what}), {torch.get_num_threads()} threads, {mode}")
    print(f"first image {times[0]:.3f}s (includes any compiling), then best {min(times[1:]):.3f}s, "
          f"median {sorted(times[1:])[len(times[1:]) // 2]:.3f}s for {args.sampler} {int(args.steps)} steps at "
          f"{model.config.image_size}x{model.config.image_size}")


if __name__ == "__main__":
    main()
