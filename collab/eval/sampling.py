"""Sampling a method on the held-out pairs: the settings of a run and the images it makes."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from collab.eval.heldout import HELDOUT_WORLD, HeldOut, conditions_for
from collab.eval.methods import Method
from collab.influence import RegionAccumulator
from collab.model import CollaborativeModel
from collab.pipeline import generate


@dataclass(frozen=True)
class SamplerSetting:
    name: str
    sampler: str
    steps: int
    eta: float = 0.0


SAMPLER_STUDY = (SamplerSetting("DDIM 50, eta 1", "ddim", 50, 1.0), SamplerSetting("DDIM 50, eta 0", "ddim", 50, 0.0),
                 SamplerSetting("DDIM 20, eta 0", "ddim", 20, 0.0),
                 SamplerSetting("DDIM 25, eta 1", "ddim", 25, 1.0), SamplerSetting("DPM-Solver++ 2M 25", "dpmpp_2m", 25),
                 SamplerSetting("DPM-Solver++ 2M 20", "dpmpp_2m", 20),
                 SamplerSetting("DPM-Solver++ 2M 10", "dpmpp_2m", 10))


@dataclass
class EvalConfig:
    n: int = 100
    steps: int = 50
    eta: float = 1.0
    sampler: str = "ddim"
    batch_size: int = 10
    rule: str | None = None
    seed: int = 0
    diversity_pairs: int = 8
    diversity_samples: int = 4
    sampler_study: bool = True
    sampler_n: int = 40
    denoising_study: bool = True  # per-timestep noise-prediction error of each collaborator and the mix
    world_seed: int = HELDOUT_WORLD  # another seed is a validation set, e.g. to choose a model's defaults


@dataclass
class Samples:
    images: np.ndarray
    seconds_per_image: float


def sample_set(model: CollaborativeModel, method: Method, data: HeldOut, cfg: EvalConfig, *, paraphrase: bool = False,
               sampler: SamplerSetting | None = None, n: int | None = None,
               callback: RegionAccumulator | None = None, progress: Callable[[str], None] = print,
               strength: dict | None = None) -> Samples:
    n = len(data.captions) if n is None else n
    s = sampler or SamplerSetting(cfg.sampler, cfg.sampler, cfg.steps, cfg.eta)
    out, t0 = [], time.perf_counter()
    for b, start in enumerate(range(0, n, cfg.batch_size)):
        idx = np.arange(start, min(start + cfg.batch_size, n))
        if callback is not None:
            callback.labels = data.labels[idx]
        res = generate(model, conditions_for(model, method.modalities, data, idx, paraphrase), mode=method.mode,
                       rule=cfg.rule, sampler=s.sampler, steps=s.steps, eta=s.eta, seed=cfg.seed + b,
                       batch_size=len(idx), callback=callback, strength=strength)
        out.append(res.images)
    seconds = (time.perf_counter() - t0) / n
    progress(f"  {method.name}{' (paraphrases)' if paraphrase else ''}{f' [{s.name}]' if sampler else ''}: "
             f"{n} images, {seconds:.2f} s/image")
    return Samples(np.concatenate(out), seconds)
