"""Training cost of the demo's stages on this machine: seconds per step, times the recipe's steps.

    python benchmarks/bench_train.py [--threads 2] [--steps 8]
    python benchmarks/bench_train.py --loop [--threads 2] [--steps 8]   # through the trainer itself

The wall times recorded in a model's training.json are what happened, including any other job that
shared the CPU; this measures each stage alone (random weights and data of the right shapes, batch and
optimiser of the recipe), so collaborators, diffusers and the joint baseline compare on equal terms.
`--loop` runs the demo's stages through the trainer (engine, DataLoader over the in-memory world,
objective, checkpointing at the recipe's interval), timing every step after the first.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from collab import kinds
from collab.config import load_config
from collab.encoders import build_encoder
from collab.schedule import DiffusionSchedule
from collab.train.demo import DemoRecipe
from collab.train.losses import diffuser_loss, ldm_loss
from collab.unet import UNetModel


def fake_condition(kind: str, encoder_config, batch: int, g: torch.Generator):
    """Random encoder input of the right shape (cached frozen states for a pre-trained text encoder,
    as the trainer feeds it): the registered kind's `example`."""
    return kinds.kind_of(encoder_config).example(encoder_config, batch, g)


def seconds_per_step(step, steps: int) -> float:
    step()  # warm-up (allocations, oneDNN primitive caches)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def fake_world(n: int = 256):
    """Random data with the demo world's shapes (images, labels, tokens, attributes, text states)."""
    from collab.data.faceworld import BINARY_ATTRIBUTES
    from collab.train.demo import WorldTensors

    g = torch.Generator().manual_seed(0)
    world = WorldTensors(torch.randint(0, 256, (n, 3, 128, 128), generator=g, dtype=torch.uint8),
                         torch.randint(0, 19, (n, 1024), generator=g, dtype=torch.uint8),
                         torch.randint(0, 100, (n, 77), generator=g), [f"{i}.png" for i in range(n)],
                         torch.randint(0, 2, (n, len(BINARY_ATTRIBUTES)), generator=g).float(), BINARY_ATTRIBUTES)
    lat = {"mean": torch.randn(n, 3, 16, 16, generator=g), "std": torch.rand(n, 3, 16, 16, generator=g) * 0.1}
    return world, lat, torch.randn(n, 32, 384, generator=g).half()


def loop_seconds_per_step(steps: int) -> dict[str, float]:
    """Every demo stage through collab.train's loop; the losses are wrapped to time each step."""
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    import collab.train.stages as stages
    from collab.train.data import WorldDataset
    from collab.train.engine import Engine, EngineConfig

    stamps: list[float] = []

    def timed(fn):
        def wrapped(*a, **k):
            stamps.append(time.perf_counter())
            return fn(*a, **k)
        return wrapped

    for name in ("vae_loss", "ldm_loss", "diffuser_loss"):
        setattr(stages, name, timed(getattr(stages, name)))
    recipe, cfg = DemoRecipe(), load_config("demo")
    world, lat, states = fake_world()
    keys = ("mask", "attributes", "text_states")
    data = WorldDataset(world, lat, keys, states)
    sched = DiffusionSchedule.linear(cfg.timesteps, cfg.linear_start, cfg.linear_end)
    engine, rows = Engine(EngineConfig(accelerator="cpu")), {}
    short = lambda c: replace(c, steps=steps + 1, quiet=True, sample_every=0)
    recipe = replace(recipe, vae=short(recipe.vae), ldm=short(recipe.ldm), diffusers=short(recipe.diffusers))

    def per_step() -> float:
        s = (stamps[-1] - stamps[1]) / (len(stamps) - 2)  # from the 2nd step's start to the last step's start
        stamps.clear()
        return s

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        vae = stages.build_vae(cfg)
        stages.vae_stage(engine, run, recipe, vae, WorldDataset(world, keys=("image",)), print)
        rows["vae"] = per_step()
        vae.eval().requires_grad_(False)
        z0 = stages.latent_sampler(vae, 1.0)
        nets, encs = {}, {}
        for m in cfg.modalities:
            unet, enc = UNetModel(m.collaborator), build_encoder(m.kind, m.encoder)
            stages.collaborator_stage(engine, run, recipe, m, data, z0, sched, unet, enc)
            rows[f"ldm_{m.name}"] = per_step()
            nets[m.name], encs[m.name] = unet.eval().requires_grad_(False), enc.eval().requires_grad_(False)
        diffusers = {m.name: UNetModel(m.diffuser) for m in cfg.modalities}
        stages.diffuser_stage(engine, run, recipe, cfg, data, z0, sched, nets, encs, diffusers)
        rows["diffusers"] = per_step()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--loop", action="store_true", help="time the demo's stages through the trainer")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.loop:
        rows = loop_seconds_per_step(args.steps)
        print(f"{args.threads} threads, through collab.train's loop; s/step:")
        print(json.dumps({k: round(v, 4) for k, v in rows.items()}))
        return
    recipe = DemoRecipe()
    g = torch.Generator().manual_seed(0)
    rows = {}
    for config in ("demo", "joint"):
        cfg = load_config(config)
        sched = DiffusionSchedule.linear(cfg.timesteps, cfg.linear_start, cfg.linear_end)
        b = recipe.ldm.batch_size
        z0 = torch.randn(b, cfg.latent_channels, cfg.latent_size, cfg.latent_size, generator=g)
        nets = {}
        for m in cfg.modalities:
            unet, enc = UNetModel(m.collaborator), build_encoder(m.kind, m.encoder)
            nets[m.name] = (unet, enc)
            opt = torch.optim.AdamW(list(unet.parameters()) + list(enc.parameters()), lr=1e-4)
            cond = fake_condition(m.kind, m.encoder, b, g)

            def step(unet=unet, enc=enc, cond=cond, opt=opt):
                loss = ldm_loss(unet, enc, cond, z0, sched, g)
                opt.zero_grad()
                loss.backward()
                opt.step()
            s = seconds_per_step(step, args.steps)
            params = sum(p.numel() for p in unet.parameters()) + sum(p.numel() for p in enc.parameters())
            rows[f"ldm_{m.name}"] = {"s_per_step": s, "steps": recipe.ldm.steps, "params": params}
        diffusers = {m.name: UNetModel(m.diffuser) for m in cfg.modalities if m.diffuser}
        if diffusers:
            collaborators = {k: v[0].eval().requires_grad_(False) for k, v in nets.items()}
            with torch.no_grad():
                ctx = {m.name: nets[m.name][1](fake_condition(m.kind, m.encoder, recipe.diffusers.batch_size, g))
                       for m in cfg.modalities}
            opt = torch.optim.AdamW([p for d in diffusers.values() for p in d.parameters()], lr=1e-4)
            zd = z0[:recipe.diffusers.batch_size]

            def dstep():
                loss = diffuser_loss(collaborators, diffusers, ctx, zd, sched, g)
                opt.zero_grad()
                loss.backward()
                opt.step()
            s = seconds_per_step(dstep, args.steps)
            params = sum(p.numel() for d in diffusers.values() for p in d.parameters())
            rows[f"diffusers ({len(diffusers)} modalities)"] = {"s_per_step": s, "steps": recipe.diffusers.steps,
                                                                "params": params}
    print(f"{args.threads} threads, batch {recipe.ldm.batch_size}; hours = s/step x recipe steps")
    print("| stage | parameters | s/step | recipe steps | hours |\n|---|---|---|---|---|")
    for k, r in rows.items():
        r["hours"] = r["s_per_step"] * r["steps"] / 3600
        print(f"| {k} | {r['params'] / 1e6:.2f}M | {r['s_per_step']:.3f} | {r['steps']} | {r['hours']:.3f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
