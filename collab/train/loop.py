"""One resumable training loop for every stage, single process or `torchrun --nproc_per_node N`.

Distributed runs use torch.distributed (gloo on CPU, nccl on CUDA): parameters are broadcast from
rank 0 at the start and gradients are averaged over ranks after every backward pass, so every rank
holds the same weights at every step. Rank 0 alone writes files.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn


class TrainingError(RuntimeError):
    """A run that must stop (a non-finite loss, bad data) with the step and the cause."""


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    lr: float
    batch_size: int
    seed: int = 0
    ema_decay: float = 0.0  # 0 = no EMA
    warmup: int = 100
    save_every: int = 250
    log_every: int = 25
    sample_every: int = 0  # 0 = only at the end
    grad_clip: float = 1.0
    quiet: bool = False


def world() -> tuple[int, int]:
    """(rank, world size), initialising the process group when launched by torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


def train(run_dir: Path, stage: str, modules: Mapping[str, nn.Module], loss_fn: Callable[[torch.Generator, int], torch.Tensor],
          cfg: LoopConfig, sample_fn: Callable[[int, Path], None] | None = None,
          describe_batch: Callable[[], str] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Train `modules` (only their parameters that require grad) on `loss_fn(generator, step)`.

    Resumes from `run_dir/<stage>.state.pt` when present; writes it atomically every `save_every`
    steps and at the end; a non-finite loss raises TrainingError without touching the last good
    state. Returns the final weights (EMA weights when EMA is on) per module.
    """
    rank, size = world()
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / f"{stage}.state.pt"
    params = {f"{m}.{n}": p for m, mod in modules.items() for n, p in mod.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    start, ema_state = 0, None
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(state["params"][k])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generators"][rank] if rank < len(state["generators"]) else state["generators"][0])
        ema_state = state["ema"]
        start = int(state["step"])
    if size > 1:  # every rank starts from rank 0's weights
        for p in params.values():
            dist.broadcast(p.data, 0)
    ema = EMA(params, cfg.ema_decay) if cfg.ema_decay else None
    if ema is not None and ema_state:
        ema.shadow = {k: v.float() for k, v in ema_state.items()}

    log = (run_dir / f"{stage}.loss.jsonl").open("a") if rank == 0 else None
    bar = None
    if rank == 0 and not cfg.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=stage, unit="step")
    t0, running = time.time(), 0.0
    for step in range(start, cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = loss_fn(g, step)
        if not torch.isfinite(loss):
            what = f" (batch: {describe_batch()})" if describe_batch else ""
            raise TrainingError(f"{stage}: non-finite loss {float(loss.detach())} at step {step + 1}{what}; "
                                f"the last good state ({state_path.name}) was kept")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if size > 1:
            for p in params.values():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= size
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(params, step)
        running += float(loss.detach())
        done = step + 1
        if rank == 0 and (done % cfg.log_every == 0 or done == cfg.steps):
            n = cfg.log_every if done % cfg.log_every == 0 else (done % cfg.log_every or cfg.log_every)
            rec = {"step": done, "loss": running / n, "lr": lr, "seconds": round(time.time() - t0, 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if bar is None and not cfg.quiet:
                print(f"[{stage}] step {done}/{cfg.steps} loss {rec['loss']:.4f}", flush=True)
            running = 0.0
        if bar is not None:
            bar.update(1)
        if done % cfg.save_every == 0 or done == cfg.steps:
            if rank == 0:
                _atomic_save({"params": {k: v.detach() for k, v in params.items()}, "optimizer": opt.state_dict(),
                              "generators": _gather_generators(g, size), "step": done,
                              "ema": ema.shadow if ema is not None else {}}, state_path)
            elif size > 1:
                _gather_generators(g, size)
            if size > 1:
                dist.barrier()
        if rank == 0 and sample_fn is not None and cfg.sample_every and done % cfg.sample_every == 0:
            sample_fn(done, run_dir)
    if bar is not None:
        bar.close()
    if log is not None:
        log.close()
    final = ema.shadow if ema is not None else {k: v.detach() for k, v in params.items()}
    out: dict[str, dict[str, torch.Tensor]] = {m: {} for m in modules}
    for k, v in final.items():
        m, n = k.split(".", 1)
        out[m][n] = v
    return out


def _gather_generators(g: torch.Generator, size: int) -> list[torch.Tensor]:
    """Every rank's data generator state, so a resumed distributed run continues each stream."""
    state = g.get_state()
    if size == 1:
        return [state]
    states = [torch.empty_like(state) for _ in range(size)]
    dist.all_gather(states, state)
    return states


def apply_weights(modules: Mapping[str, nn.Module], weights: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Copy trained (or EMA) weights into the modules."""
    with torch.no_grad():
        for m, tensors in weights.items():
            named = dict(modules[m].named_parameters())
            for n, v in tensors.items():
                named[n].copy_(v)

