"""One resumable training loop for every stage, on the engine (Lightning Fabric).

Single process, `--devices N` on one machine or `torchrun` / SLURM over nodes: Fabric places the
objective and the batches on the device, wraps the objective for DDP or FSDP (gradients averaged over
ranks, so every rank holds the same weights), runs the forward under the chosen precision and skips
the gradient sync on all but the last micro-batch of an accumulated step. Rank 0 alone writes logs.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from collab.train.data import Batches, describe
from collab.train.engine import Engine, EngineError

SCHEDULES = ("constant", "cosine")


class TrainingError(RuntimeError):
    """A run that must stop (a non-finite loss, bad data) with the step and the cause."""


@dataclass(frozen=True)
class LoopConfig:
    """Every hyper-parameter of one stage (a recipe holds one per stage)."""
    steps: int
    lr: float
    batch_size: int  # per process and micro-batch
    seed: int = 0
    ema_decay: float = 0.0  # 0 = no EMA
    warmup: int = 100
    save_every: int = 250
    log_every: int = 25
    sample_every: int = 0  # write samples after every N-th optimiser step (the last one too if N divides it); 0 = never
    grad_clip: float = 1.0  # 0 = no clipping
    quiet: bool = False
    accumulate: int = 1  # micro-batches per optimiser step
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    scale_lr: bool = False  # lr *= batch_size * processes * accumulate (the official main.py's rule)
    schedule: str = "constant"  # after the warm-up: constant, or cosine down to 0 at `steps`

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        for name in ("steps", "batch_size", "accumulate", "save_every", "log_every"):
            if getattr(self, name) < (0 if name == "steps" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def lr_at(self, step: int, base: float) -> float:
        warm = min(1.0, (step + 1) / max(self.warmup, 1))
        if self.schedule == "cosine" and step >= self.warmup:
            import math

            frac = (step - self.warmup) / max(1, self.steps - self.warmup)
            return base * 0.5 * (1 + math.cos(math.pi * frac))
        return base * warm


class EMA:
    """Exponential moving average of parameters (kept in float32)."""

    def __init__(self, params: Mapping[str, torch.Tensor], decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in params.items()}

    @torch.no_grad()
    def update(self, params: Mapping[str, torch.Tensor], step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # warm start: follow the weights early on
        for k, v in params.items():
            self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)


class Objective(nn.Module):
    """The trainable networks of a stage and its loss, as one module for Fabric to wrap: DDP then
    syncs every gradient of the stage, whatever the loss calls. Frozen networks the loss uses stay
    outside (not registered), so checkpoints hold only what trains."""

    def __init__(self, modules: Mapping[str, nn.Module], loss_fn: Callable, all_in_graph: bool = False) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(dict(modules))
        self.loss_fn = loss_fn
        self.all_in_graph = all_in_graph

    def forward(self, batch, g: torch.Generator) -> torch.Tensor:
        loss = self.loss_fn(batch, g)
        if self.all_in_graph:
            # DDP needs a gradient for every parameter at every step; a step that leaves a network out
            # (a diffuser outside this step's modality subset) gives it an exact zero instead.
            loss = loss + 0.0 * sum(p.view(-1)[0] for p in self.parameters() if p.requires_grad)
        return loss


def _gather(engine: Engine, state: torch.Tensor) -> list[torch.Tensor]:
    if engine.world_size == 1:
        return [state]
    return list(engine.fabric.all_gather(state).cpu())


def train(engine: Engine, run_dir: Path, stage: str, modules: Mapping[str, nn.Module], loss_fn: Callable,
          data, cfg: LoopConfig, sample_fn: Callable[[int, Path], None] | None = None,
          workers: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Train `modules` (their parameters that require grad) on `loss_fn(batch, generator)` over the
    Dataset `data`; returns the final weights (EMA weights when EMA is on) per module, on the CPU.

    Resumes from `run_dir/<stage>.ckpt` (weights, optimiser, EMA, every rank's generator, data
    position); writes it atomically every `save_every` steps and at the end; a non-finite loss
    raises TrainingError without touching the last good checkpoint.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / f"{stage}.ckpt"
    accumulate = engine.cfg.accumulate or cfg.accumulate
    if engine.sharded and cfg.ema_decay:
        raise EngineError(f"{stage}: EMA is not supported with --strategy fsdp (weights are sharded); "
                          f"use --strategy ddp or --set {stage.split('_')[0]}.ema_decay=0")
    module, named, opt, base_lr = _setup(engine, modules, loss_fn, cfg, stage, accumulate)
    batches = Batches(data, cfg.batch_size, cfg.seed, engine.rank, engine.world_size, workers,
                      pin_memory=engine.device.type == "cuda")
    g = torch.Generator().manual_seed(cfg.seed * 1000 + engine.rank)
    ema = EMA(named, cfg.ema_decay) if cfg.ema_decay else None
    start = _restore(engine, ckpt, module, opt, g, batches, ema)

    log = (run_dir / f"{stage}.loss.jsonl").open("a") if engine.is_main else None
    bar = None
    if engine.is_main and not cfg.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=stage, unit="step")
    t0, running = time.time(), 0.0

    def save(done: int) -> None:
        engine.save_atomic(ckpt, {"model": module, "optimizer": opt, "step": done,
                                  "ema": ema.shadow if ema is not None else {},
                                  "generators": _gather(engine, g.get_state()), "data": batches.state()})

    for step in range(start, cfg.steps):
        lr = cfg.lr_at(step, base_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = _optimiser_step(engine, module, opt, batches, g, accumulate, cfg.grad_clip, (stage, step, ckpt))
        if ema is not None:
            ema.update(named, step)
        running += loss
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            n = cfg.log_every if done % cfg.log_every == 0 else (done % cfg.log_every or cfg.log_every)
            rec = {"step": done, "loss": running / n, "lr": lr, "seconds": round(time.time() - t0, 1)}
            if log is not None:
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if bar is None and not cfg.quiet:
                    print(f"[{stage}] step {done}/{cfg.steps} loss {rec['loss']:.4f}", flush=True)
            engine.log({f"{stage}/loss": rec["loss"], f"{stage}/lr": lr}, step=done)
            running = 0.0
        if bar is not None:
            bar.update(1)
        if done % cfg.save_every == 0 or done == cfg.steps:
            save(done)
        if engine.is_main and sample_fn is not None and cfg.sample_every and done % cfg.sample_every == 0:
            sample_fn(done, run_dir)
    if bar is not None:
        bar.close()
    if log is not None:
        log.close()
    out = _final_weights(engine, module, named, ema, list(modules))
    if engine.sharded:
        _unshard(modules, out, engine.device)
    return out


def _setup(engine: Engine, modules, loss_fn, cfg: LoopConfig, stage: str, accumulate: int):
    """The objective wrapped by Fabric, its trainable parameters by name, the optimiser, the base lr."""
    objective = Objective(modules, loss_fn, all_in_graph=engine.world_size > 1)
    module = engine.fabric.setup_module(objective)
    named = {n[len("nets."):]: p for n, p in objective.named_parameters() if p.requires_grad}
    if not named:
        raise TrainingError(f"{stage}: nothing to train (every parameter is frozen)")
    base_lr = cfg.lr * (cfg.batch_size * engine.world_size * accumulate if cfg.scale_lr else 1)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=base_lr,
                            betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    return module, named, engine.fabric.setup_optimizers(opt), base_lr


def _restore(engine: Engine, ckpt: Path, module, opt, g: torch.Generator, batches: Batches, ema: EMA | None) -> int:
    """Load the stage's checkpoint when there is one; the step to start from."""
    state = {"model": module, "optimizer": opt, "step": 0, "ema": {}, "generators": [], "data": {}}
    if ckpt.exists():
        engine.fabric.load(ckpt, state)
        gens = state["generators"]
        g.set_state(gens[engine.rank] if engine.rank < len(gens) else gens[0])
        batches.restore(state["data"])
    if ema is not None:
        shadow = state["ema"] or ema.shadow
        ema.shadow = {k: v.to(engine.device).float() for k, v in shadow.items()}
    return int(state["step"])


def _optimiser_step(engine: Engine, module, opt, batches: Batches, g: torch.Generator, accumulate: int,
                    grad_clip: float, where: tuple) -> float:
    """`accumulate` micro-batches (gradient sync only on the last), clipping, one optimiser step;
    the mean micro-batch loss."""
    fabric = engine.fabric
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for micro in range(accumulate):
        batch = fabric.to_device(next(batches))
        with fabric.no_backward_sync(module, enabled=micro < accumulate - 1):
            loss = module(batch, g)
            _check_finite(engine, loss, *where[:2], batch, where[2])
            fabric.backward(loss / accumulate)
        total += float(loss.detach())
    if grad_clip:
        fabric.clip_gradients(module, opt, max_norm=grad_clip)
    opt.step()
    return total / accumulate


def _check_finite(engine: Engine, loss: torch.Tensor, stage: str, step: int, batch, ckpt: Path) -> None:
    """Stop on a non-finite loss on any rank (all ranks stop together: none waits in a collective)."""
    bad = (~torch.isfinite(loss.detach())).float().reshape(1)
    if engine.world_size > 1:
        bad = engine.fabric.all_reduce(bad, reduce_op="max")
    if bad.item():
        raise TrainingError(f"{stage}: non-finite loss {float(loss.detach())} at step {step + 1} "
                            f"(batch: {describe(batch)}); the last good state ({ckpt.name}) was kept")


def _final_weights(engine: Engine, module, named: dict, ema: EMA | None, names: list[str]):
    if ema is not None:
        final = ema.shadow
    elif engine.sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(module._forward_module, options=StateDictOptions(full_state_dict=True,
                                                                                    cpu_offload=True))
        final = {k[len("nets."):]: v for k, v in full.items() if k[len("nets."):] in named}
    else:
        final = {k: v.detach() for k, v in named.items()}
    out: dict[str, dict[str, torch.Tensor]] = {m: {} for m in names}
    for k, v in final.items():
        m, n = k.split(".", 1)
        out[m][n] = v.detach().cpu().clone()
    return out


def _unshard(modules: Mapping[str, nn.Module], weights: dict, device: torch.device) -> None:
    """After FSDP the modules hold views of this rank's shard: give them whole parameters again, so
    later stages (and export) use them as plain modules."""
    for m, tensors in weights.items():
        for name, value in tensors.items():
            owner, _, leaf = name.rpartition(".")
            sub = modules[m].get_submodule(owner) if owner else modules[m]
            setattr(sub, leaf, nn.Parameter(value.to(device), requires_grad=True))


def apply_weights(modules: Mapping[str, nn.Module], weights: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Copy trained (or EMA) weights into the modules."""
    with torch.no_grad():
        for m, tensors in weights.items():
            named = dict(modules[m].named_parameters())
            for n, v in tensors.items():
                named[n].copy_(v)
