"""What refusing non-finite weights costs at load, on a checkpoint of the official 256 shapes.

    python benchmarks/bench_finite_check.py                 # in-memory state dict only
    python benchmarks/bench_finite_check.py --ckpt DIR      # also a full load_official of a synthetic
                                                            # 256_codiff_mask_text.ckpt written to DIR

The state dict has every key and shape of the released `256_codiff_mask_text.ckpt` (3,392 tensors)
with constant values (the check's cost does not depend on them). Prints the seconds of
`collab.validate.first_non_finite` over it, and with --ckpt the seconds of `load_official` with and
without the check (the file is memory-mapped, so the check is also what first reads it from disk).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from unittest import mock

import torch

from collab import validate
from collab.checkpoint import SCHEDULE_KEYS, load_official, official_shapes
from collab.config import load_config
from collab.schedule import DiffusionSchedule


def official_state_dict(name: str = "official_256") -> dict[str, torch.Tensor]:
    cfg = load_config(name)
    shapes = official_shapes(cfg, "compose")
    sd = {k: torch.full(s, 0.01) for k, s in shapes.items() if k not in SCHEDULE_KEYS}
    sd.update(DiffusionSchedule.linear(cfg.timesteps, cfg.linear_start, cfg.linear_end).official_buffers())
    return sd


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, help="folder for the synthetic checkpoint (about 3.6 GB)")
    ap.add_argument("--vocab", default="tests/fixtures/reference/bert-base-uncased-vocab.txt")
    args = ap.parse_args()
    sd = official_state_dict()
    numel = sum(v.numel() for v in sd.values())
    print(f"{len(sd)} tensors, {numel / 1e6:.1f}M values, {numel * 4 / 1e9:.2f} GB float32, "
          f"{torch.get_num_threads()} torch threads")
    seconds = timed(lambda: validate.first_non_finite(sd))
    print(f"first_non_finite (in memory): {seconds:.2f} s = {numel * 4 / 1e9 / seconds:.1f} GB/s")
    if args.ckpt is None:
        return
    args.ckpt.mkdir(parents=True, exist_ok=True)
    path = args.ckpt / "256_codiff_mask_text.ckpt"
    if not path.exists():
        torch.save({"state_dict": sd}, path)
    del sd
    kw = dict(config="official_256", vocab=args.vocab)
    with_check = timed(lambda: load_official(path, **kw), repeats=2)
    with mock.patch.object(validate, "first_non_finite", lambda tensors: None):
        without = timed(lambda: load_official(path, **kw), repeats=2)
    print(f"load_official: {with_check:.2f} s with the check, {without:.2f} s without "
          f"(+{with_check - without:.2f} s; page cache warm after the first load)")


if __name__ == "__main__":
    main()
