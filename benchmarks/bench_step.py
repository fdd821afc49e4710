"""Seconds per collaborative step and peak resident memory, at official 256 shapes and for the demo model.

    python benchmarks/bench_step.py                       # every case, each in a fresh process
    python benchmarks/bench_step.py --case official_256 --dtype bfloat16 --repeats 3
    python benchmarks/bench_step.py --table               # Markdown table: demo / official 256 / 512,
                                                          # dtypes, batch sizes, FLOPs, GFLOP/s vs matmul peak

One step = both collaborators + both dynamic diffusers + softmax/mix + DDIM update, batch 1, random
weights (the timing does not depend on the values). Prints the first (cold) step, the best of the
following ones, peak RSS of the process, and for reduced precision the deviation of the final latents from the official float32 golden runs.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from collab.config import load_config
from collab.model import CollaborativeModel
from collab.pipeline import CollaborativeDenoiser
from collab.samplers import ddim_step


def build(case: str, dtype: torch.dtype, seed: int = 0, channels_last: bool = True) -> CollaborativeModel:
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
    model.set_precision(dtype)  # native low precision where the CPU has it, else weight-only
    return model.eval().requires_grad_(False).use_channels_last(channels_last)


def contexts(model: CollaborativeModel, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    out = {}
    for m in model.config.modalities:
        length = 77 if m.kind == "text" else 19
        out[m.name] = torch.randn(1, length, m.collaborator.context_dim, generator=g).to(dtype)
    return out


def golden_deviation(dtype: torch.dtype) -> float:
    """Max relative deviation of the final latents from the official float32 golden runs when the
    UNets are loaded in `dtype` (fixtures in tests/fixtures/reference)."""
    from safetensors.torch import load_file

    from collab.checkpoint import load_official
    from collab.config import load_official_config
    from collab.pipeline import generate

    ref = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reference"
    io = load_file(ref / "compose_tiny_io.safetensors")
    model = load_official(ref / "compose_tiny_weights.safetensors", load_official_config(ref / "compose_tiny_compose.yaml"),
                          vocab=ref / "bert-base-uncased-vocab.txt", dtype=dtype)
    runs = json.loads((ref / "compose_tiny.json").read_text())["runs"]
    ctx = {"mask": model.encoders["mask"](io["mask_onehot"]), "text": model.encoders["text"](io["text_tokens"][:1])}
    worst = 0.0
    for tag, run in runs.items():
        res = generate(model, {}, contexts=ctx, steps=run["S"], eta=run["eta"], x_T=io[f"{tag}/x_T"],
                       rule="official" if run["official_weighting"] else "paper",
                       noise=lambda k, like, tag=tag: io[f"{tag}/noise"][k])
        z = io[f"{tag}/z_0"]
        worst = max(worst, float((res.latents - z).abs().max() / z.abs().max()))
    return worst


def one_step(denoiser: CollaborativeDenoiser, x: torch.Tensor, t: int) -> torch.Tensor:
    eps = denoiser(x, torch.full((x.shape[0],), t))
    x_prev, _ = ddim_step(x, eps, 0.2, 0.25, 0.1, torch.randn_like(x))
    return eps


def step_flops(denoiser: CollaborativeDenoiser, x: torch.Tensor) -> float:
    """Floating-point operations of one step (convolutions, matmuls, attention), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        one_step(denoiser, x, 500)
    return float(counter.get_total_flops())


def matmul_peak(threads: int | None = None, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of a float32 n x n matmul: the machine's practical compute ceiling."""
    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_case(case: str, dtype_name: str, repeats: int, threads: int | None, batch: int = 1,
             deviation: bool = True) -> dict:
    if threads:
        torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    t0 = time.perf_counter()
    model = build(case, dtype)
    build_s = time.perf_counter() - t0
    ctx = {k: v.expand(batch, -1, -1) for k, v in contexts(model, dtype).items()}
    x = torch.randn(model.latent_shape(batch), generator=torch.Generator().manual_seed(2))
    rule = model.config.default_rule
    with torch.inference_mode():
        den = CollaborativeDenoiser(model, ctx, "collaborative", rule)
        times = []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            eps = one_step(den, x, 981 - 20 * i)
            times.append(time.perf_counter() - t0)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # before anything else allocates
    with torch.inference_mode():
        flops = step_flops(den, x)
    dev = golden_deviation(dtype) if dtype != torch.float32 and deviation else None
    params = sum(p.numel() for p in model.collaborators.parameters()) + sum(p.numel() for p in model.diffusers.parameters())
    best = min(times[1:])
    return {"case": case, "dtype": dtype_name, "batch": batch, "threads": torch.get_num_threads(),
            "params_M": round(params / 1e6, 1), "build_s": round(build_s, 2), "first_step_s": round(times[0], 3),
            "best_step_s": round(best, 3), "steps_s": [round(t, 3) for t in times], "peak_rss_GB": round(peak_gb, 2),
            "gflop_per_step": round(flops / 1e9, 2), "gflops_achieved": round(flops / best / 1e9, 1),
            "images_per_s_50_steps": round(batch / (50 * best), 3), "rel_deviation_vs_fp32": dev}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", help="config name (official_256, official_512, demo); default: all")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16; default: float32 and bfloat16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--table", action="store_true", help="the full speed table (Markdown), each case in a fresh process")
    ap.add_argument("--json", action="store_true", help="print one JSON line (used by the all-cases driver)")
    args = ap.parse_args()
    if args.table:
        return table(args.repeats, args.threads)
    if args.case and args.dtype:
        res = run_case(args.case, args.dtype, args.repeats, args.threads, args.batch)
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


TABLE_CASES = (("demo", "float32", 1), ("demo", "float32", 4), ("demo", "bfloat16", 1),
               ("official_256", "float32", 1), ("official_256", "float32", 2), ("official_256", "bfloat16", 1),
               ("official_512", "float32", 1), ("official_512", "bfloat16", 1))


def table(repeats: int, threads: int | None) -> None:
    """Every case of TABLE_CASES in a fresh process (clean peak RSS), as a Markdown table."""
    peak = matmul_peak(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, {torch.get_num_threads()} threads, float32 matmul peak {peak:.1f} GFLOP/s\n")
    print("| model | dtype | batch | ms/step | peak RSS | GFLOP/step | GFLOP/s (% of matmul peak) | images/s (50 steps) |")
    print("|---|---|---|---|---|---|---|---|")
    for case, dt, batch in TABLE_CASES:
        cmd = [sys.executable, __file__, "--case", case, "--dtype", dt, "--batch", str(batch),
               "--repeats", str(repeats), "--json"]
        if threads:
            cmd += ["--threads", str(threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"| {case} | {dt} | {batch} | failed: {out.stderr.strip().splitlines()[-1][:80]} |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {case} | {dt} | {batch} | {1000 * r['best_step_s']:.0f} | {r['peak_rss_GB']:.2f} GB | "
              f"{r['gflop_per_step']:.1f} | {r['gflops_achieved']:.0f} ({100 * r['gflops_achieved'] / peak:.0f}%) | "
              f"{r['images_per_s_50_steps']:.3f} |", flush=True)


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
