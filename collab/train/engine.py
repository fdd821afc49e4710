"""The engine every training stage runs on: Lightning Fabric, configured from flags.

Fabric keeps our loop explicit (we still write `loss = objective(batch, g)`, backward, step) while it
owns what changes with the hardware: device placement, DDP / FSDP wrapping, process launch and
rendezvous, mixed precision, gradient sync skipping during accumulation, checkpoint I/O and loggers.
Scaling up is flags (`--devices 8 --num-nodes 2`), never code.
"""
from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

ACCELERATORS = ("auto", "cpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp", "fsdp")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
LOGGERS = ("none", "csv", "tensorboard", "wandb")


class EngineError(ValueError):
    """A bad engine flag or a missing optional package, with what is allowed."""


@dataclass(frozen=True)
class EngineConfig:
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto = one process: no wrapping; several: ddp
    precision: str = "32"
    accumulate: int | None = None  # None: each stage's recipe value
    logger: str = "none"
    workers: int | None = None  # None: the recipe's

    def __post_init__(self) -> None:
        for name, value, allowed in (("accelerator", self.accelerator, ACCELERATORS),
                                     ("strategy", self.strategy, STRATEGIES),
                                     ("precision", self.precision, PRECISIONS), ("logger", self.logger, LOGGERS)):
            if value not in allowed:
                raise EngineError(f"--{name} {value!r} is not one of {', '.join(allowed)}")
        for name, value in (("devices", self.devices), ("num-nodes", self.num_nodes)):
            if value < 1:
                raise EngineError(f"--{name} must be at least 1, got {value}")
        if self.accumulate is not None and self.accumulate < 1:
            raise EngineError(f"--accumulate must be at least 1, got {self.accumulate}")
        if self.workers is not None and self.workers < 0:
            raise EngineError(f"--workers must be 0 or more, got {self.workers}")


def add_engine_args(ap: argparse.ArgumentParser, default_accelerator: str = "auto", default_logger: str = "csv") -> None:
    g = ap.add_argument_group("engine (Lightning Fabric)")
    g.add_argument("--accelerator", default=default_accelerator, choices=ACCELERATORS)
    g.add_argument("--devices", type=int, default=1, help="processes (GPUs) per node")
    g.add_argument("--num-nodes", type=int, default=1)
    g.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="auto: ddp when more than one process; fsdp shards weights and optimiser state")
    g.add_argument("--precision", default="32", choices=PRECISIONS)
    g.add_argument("--accumulate", type=int, default=None, help="micro-batches per optimiser step (every stage)")
    g.add_argument("--logger", default=default_logger, choices=LOGGERS,
                   help="metrics logger besides <stage>.loss.jsonl (tensorboard / wandb need their package)")
    g.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default: the recipe's)")


def engine_config_from_args(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(args.accelerator, args.devices, args.num_nodes, args.strategy, args.precision,
                        args.accumulate, args.logger, args.workers)


def make_logger(kind: str, run_dir: Path, name: str = "collab"):
    """The chosen Fabric logger; tensorboard and wandb are imported only when chosen."""
    if kind == "none":
        return None
    if kind == "csv":
        from lightning.fabric.loggers import CSVLogger

        return CSVLogger(run_dir / "logs", name=name)
    if kind == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError as e:
            raise EngineError("--logger tensorboard needs the tensorboard package: pip install tensorboard") from e
        from lightning.fabric.loggers import TensorBoardLogger

        return TensorBoardLogger(run_dir / "logs", name=name)
    try:
        import wandb  # noqa: F401
    except ImportError as e:
        raise EngineError("--logger wandb needs the wandb package: pip install wandb (then wandb login)") from e
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(project=name, save_dir=str(run_dir / "logs"))


def _strategy(cfg: EngineConfig):
    if cfg.strategy == "fsdp":
        from lightning.fabric.strategies import FSDPStrategy

        # frozen collaborators beside trainable diffusers need the original parameters kept
        return FSDPStrategy(use_orig_params=True, state_dict_type="full")
    if cfg.strategy == "ddp" or (cfg.strategy == "auto" and cfg.devices * cfg.num_nodes > 1):
        return "ddp"
    return "auto"


class Engine:
    """A launched Fabric plus the few helpers the loop needs (rank, atomic checkpoints)."""

    def __init__(self, cfg: EngineConfig = EngineConfig(), run_dir: Path | None = None, fabric=None) -> None:
        self.cfg = cfg
        if fabric is None:
            from lightning.fabric import Fabric

            if cfg.accelerator == "cuda" and not torch.cuda.is_available():
                raise EngineError("--accelerator cuda: no CUDA device is visible to PyTorch "
                                  f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'})")
            if cfg.strategy == "fsdp" and (cfg.accelerator in ("cpu", "mps") or not torch.cuda.is_available()):
                raise EngineError("--strategy fsdp runs on CUDA GPUs only (Lightning's FSDP); use ddp on "
                                  f"--accelerator {cfg.accelerator}")
            logger = make_logger(cfg.logger, run_dir or Path("runs"))
            precision = "32-true" if cfg.precision == "32" else cfg.precision
            try:
                fabric = Fabric(accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
                                strategy=_strategy(cfg), precision=precision, loggers=logger)
            except (ValueError, RuntimeError) as e:  # e.g. more devices than the machine has
                raise EngineError(f"the engine cannot start with these flags: {e}") from e
            fabric.launch()
        self.fabric = fabric

    @property
    def device(self) -> torch.device:
        return self.fabric.device

    @property
    def rank(self) -> int:
        return self.fabric.global_rank

    @property
    def world_size(self) -> int:
        return self.fabric.world_size

    @property
    def is_main(self) -> bool:
        return self.fabric.is_global_zero

    @property
    def sharded(self) -> bool:
        return self.cfg.strategy == "fsdp"

    def barrier(self) -> None:
        self.fabric.barrier()

    def save_atomic(self, path: Path, state: dict) -> None:
        """fabric.save to a temporary name, then one rename: a crash leaves the last good checkpoint."""
        tmp = path.with_name(path.name + ".tmp")
        self.fabric.save(tmp, state)
        if self.is_main:
            if path.is_dir():  # sharded checkpoints are folders; os.replace cannot overwrite one
                old = path.with_name(path.name + ".old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        self.barrier()

    def log(self, metrics: dict, step: int) -> None:
        if self.fabric.loggers:
            self.fabric.log_dict(metrics, step=step)
            for logger in self.fabric.loggers:
                logger.save()  # on disk at every logged step, so a killed run keeps its curves

