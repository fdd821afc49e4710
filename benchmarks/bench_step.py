"""Seconds per collaborative step and peak resident memory, at official 256 shapes and for the demo model.

    python benchmarks/bench_step.py                       # every case, each in a fresh process
    python benchmarks/bench_step.py --case official_256 --dtype bfloat16 --repeats 3

One step = both collaborators + both dynamic diffusers + softmax/mix + DDIM update, batch 1, random
weights (the timing does not depend on the values). Prints the first (cold) step, the best of the
following ones, peak RSS of the process, and for reduced precision the deviation of one step's eps
from float32 on the same inputs.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace

import torch

from collab.config import load_config
from collab.model import CollaborativeModel
from collab.pipeline import CollaborativeDenoiser
from collab.samplers import ddim_step


def build(case: str, dtype: torch.dtype, seed: int = 0) -> CollaborativeModel:
    """Random-weight model; only the UNets are materialised (VAE and encoders stay on meta)."""
    cfg = load_config(case)
    with torch.device("meta"):
        model = CollaborativeModel(cfg)
    g = torch.Generator().manual_seed(seed)
    for part in (model.collaborators, model.diffusers):
        part.to(dtype).to_empty(device="cpu")
        for p in part.parameters():
            # uniform(-1/sqrt(fan_in), ..), like default init, drawn in float32 then cast
            fan_in = p[0].numel() if p.ndim > 1 else 1
            bound = (1.0 / fan_in) ** 0.5 if p.ndim > 1 else 0.1
            p.data.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=g))
    return model.eval().requires_grad_(False)


def contexts(model: CollaborativeModel, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    out = {}
    for m in model.config.modalities:
        length = 77 if m.kind == "text" else 19
        out[m.name] = torch.randn(1, length, m.collaborator.context_dim, generator=g).to(dtype)
    return out


def one_step(denoiser: CollaborativeDenoiser, x: torch.Tensor, t: int) -> torch.Tensor:
    eps = denoiser(x, torch.tensor([t]))
    x_prev, _ = ddim_step(x, eps, 0.2, 0.25, 0.1, torch.randn_like(x))
    return eps


def run_case(case: str, dtype_name: str, repeats: int, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    t0 = time.perf_counter()
    model = build(case, dtype)
    build_s = time.perf_counter() - t0
    ctx = contexts(model, dtype)
    x = torch.randn(model.latent_shape(1), generator=torch.Generator().manual_seed(2))
    rule = model.config.default_rule
    with torch.inference_mode():
        den = CollaborativeDenoiser(model, ctx, "collaborative", rule)
        times = []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            eps = one_step(den, x, 981 - 20 * i)
            times.append(time.perf_counter() - t0)
        deviation = None
        if dtype != torch.float32:
            # same weights in float32 (cast up from the reduced-precision values) on the same input
            eps_low = den(x, torch.tensor([501])).float()
            model.collaborators.float()
            model.diffusers.float()
            ref = CollaborativeDenoiser(model, {k: v.float() for k, v in ctx.items()}, "collaborative", rule)
            eps_ref = ref(x, torch.tensor([501]))
            deviation = float((eps_low - eps_ref).abs().max() / eps_ref.abs().max())
    params = sum(p.numel() for p in model.collaborators.parameters()) + sum(p.numel() for p in model.diffusers.parameters())
    return {"case": case, "dtype": dtype_name, "threads": torch.get_num_threads(), "params_M": round(params / 1e6, 1),
            "build_s": round(build_s, 2), "first_step_s": round(times[0], 3), "best_step_s": round(min(times[1:]), 3),
            "steps_s": [round(t, 3) for t in times], "peak_rss_GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "rel_deviation_vs_fp32": deviation}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", help="config name (official_256, official_512, demo); default: all")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16; default: float32 and bfloat16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print one JSON line (used by the all-cases driver)")
    args = ap.parse_args()
    if args.case and args.dtype:
        res = run_case(args.case, args.dtype, args.repeats, args.threads)
        print(json.dumps(res) if args.json else _row(res))
        return
    cases = [args.case] if args.case else [c for c in ("official_256", "demo") if _exists(c)]
    dtypes = [args.dtype] if args.dtype else ["float32", "bfloat16"]
    print(f"{'case':14} {'dtype':9} {'threads':>7} {'params':>8} {'first step':>10} {'best step':>9} {'peak RSS':>8}  deviation")
    for case in cases:
        for dt in dtypes:
            cmd = [sys.executable, __file__, "--case", case, "--dtype", dt, "--repeats", str(args.repeats), "--json"]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(f"{case} {dt}: failed\n{out.stderr[-2000:]}")
                continue
            print(_row(json.loads(out.stdout.strip().splitlines()[-1])))


def _exists(case: str) -> bool:
    try:
        load_config(case)
        return True
    except FileNotFoundError:
        return False


def _row(r: dict) -> str:
    dev = f"{r['rel_deviation_vs_fp32']:.2e}" if r["rel_deviation_vs_fp32"] is not None else "-"
    return (f"{r['case']:14} {r['dtype']:9} {r['threads']:>7} {r['params_M']:>7}M {r['first_step_s']:>9.3f}s "
            f"{r['best_step_s']:>8.3f}s {r['peak_rss_GB']:>6.2f}GB  {dev}")


if __name__ == "__main__":
    main()
