"""Collaborative sampling: per step, every collaborator's eps, influence maps, softmax, mix, update.

`generate` is the one entry point; comparisons (composable, single modality, ablations) are modes
of the same call on the same collaborators, and the mode and rule are recorded in the result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from collab import combination as comb
from collab import validate
from collab.model import CollaborativeModel
from collab.samplers import SAMPLERS, NoiseFn, Prediction, StepInfo, gaussian_noise
from collab.schedule import SamplingSchedule


@dataclass(frozen=True)
class CollabStep:
    """What a callback sees after each step. Tensors are the live ones: copy what you keep."""

    index: int
    num_steps: int
    t: int
    x_t: torch.Tensor  # [B, C, h, w] input latent of the step
    pred_x0: torch.Tensor  # [B, C, h, w]
    x_prev: torch.Tensor
    influence: dict[str, torch.Tensor]  # name -> weights used [B, 1, h, w] (after softmax and rule)


@dataclass(frozen=True)
class GenerationSettings:
    modalities: tuple[str, ...]
    mode: str
    rule: str
    sampler: str
    steps: int
    eta: float
    seed: int | None
    batch_size: int
    dtype: str
    timesteps: tuple[int, ...]
    strength: dict[str, float | str] = field(default_factory=dict)  # name -> number, or a map's summary
    window: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (start, end) run fractions

    def describe(self) -> str:
        rule = f", rule={self.rule}" if self.mode == "collaborative" and len(self.modalities) > 1 else ""
        return (f"{'+'.join(self.modalities)} | mode={self.mode}{rule} | {self.sampler} {self.steps} steps "
                f"eta={self.eta} | seed={self.seed}{self.describe_handles()}")

    def describe_handles(self) -> str:
        """' | strength text=1.5 | window mask=0:0.6' for the handles that differ from the default."""
        s = [f"{n}={v:g}" if isinstance(v, float) else f"{n}={v}" for n, v in self.strength.items() if v != 1.0]
        w = [f"{n}={a:g}:{b:g}" for n, (a, b) in self.window.items() if (a, b) != (0.0, 1.0)]
        return (f" | strength {', '.join(s)}" if s else "") + (f" | window {', '.join(w)}" if w else "")


@dataclass
class GenerationResult:
    images: np.ndarray  # [B, H, W, 3] uint8
    latents: torch.Tensor  # z_0 [B, C, h, w], scaled
    settings: GenerationSettings
    extras: dict[str, Any] = field(default_factory=dict)


class CollaborativeDenoiser:
    """eps(x_t, t) for a fixed set of modalities and their contexts; the sampler's denoiser.

    Modes (`MODE_WEIGHTS`, one entry each):
    - "collaborative": learned influence, per-pixel softmax over modalities (rule "paper"), or
      the official sampler's cosine decay + doubling of the lead-early (mask) weight on top (rule "official").
    - "composable": fixed equal weights 1/M at every pixel and step, i.e. the convex average
      sum_m eps_m / M (Composable Diffusion without an unconditional term: the released
      collaborators were trained without condition dropout, so eps_u is not available).
    - "no_spatial" ablation: the collaborative weights averaged over pixels at every step
      (time-varying, spatially constant).
    - "no_temporal" ablation: the collaborative weights of the first (noisiest) step, kept for all
      later steps (spatially varying, constant in time). The paper retrained diffusers for its
      ablations; these are inference-time equivalents on the same diffusers.
    A single modality is simply a one-entry call: its collaborator alone, weight 1.
    On top of any mode, `steering` (user strengths and step windows, `combination.steer`) reweighs
    each step; `step_of` maps a visited timestep to its step index. `predict` returns eps with the
    weights used (what a sampler hands to its callback); calling the denoiser returns eps alone.
    """

    def __init__(self, model: CollaborativeModel, contexts: Mapping[str, torch.Tensor], mode: str, rule: str,
                 collaborators: Mapping[str, torch.nn.Module] | None = None,
                 steering: comb.Steering | None = None, step_of: Mapping[int, int] | None = None) -> None:
        self.model = model
        self.overrides = collaborators or {}
        self.names = tuple(contexts)
        self.contexts = contexts
        self.mode = comb.validate_mode(mode)
        self.rule = comb.validate_rule(rule)
        missing = [n for n in self.names if n not in model.diffusers] if self.mode != "composable" else []
        if missing and len(self.names) > 1:
            raise ValueError(f"mode {mode!r} needs dynamic diffusers, missing for {missing}")
        leads_early = tuple(model.config.modality(n).leads_early for n in self.names)
        self.reweight = comb.OfficialReweighting(leads_early, num_timesteps=model.config.timesteps)
        self._frozen: torch.Tensor | None = None  # the "no_temporal" mode's first-step weights
        self.steering, self.step_of = steering, step_of or {}

    def learned(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The dynamic diffusers' weights: softmax of their logits, then the combination rule."""
        logits = torch.stack([self.model.run("diffusers", n, x_t, t, self.contexts[n]) for n in self.names])
        w = comb.softmax_influence(logits)
        return self.reweight(w, int(t[0])) if self.rule == "official" else w

    def weights(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if len(self.names) == 1:
            return comb.uniform_weights(1, x_t)
        return MODE_WEIGHTS[self.mode](self, x_t, t)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        eps = torch.stack([self.model.run("collaborators", n, x_t, t, self.contexts[n], self.overrides.get(n))
                           for n in self.names])
        w = self.weights(x_t, t)
        if self.steering is not None:
            w = comb.steer(w, self.steering.factors(self.step_of[int(t[0])], w.device))
        return Prediction(comb.combine(eps, w), w)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.predict(x_t, t).eps


def _first_step_weights(den: CollaborativeDenoiser, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if den._frozen is None:
        den._frozen = den.learned(x_t, t)
    return den._frozen


WeightsFn = Callable[[CollaborativeDenoiser, torch.Tensor, torch.Tensor], torch.Tensor]
MODE_WEIGHTS: dict[str, WeightsFn] = {  # keys: combination.MODES
    "collaborative": CollaborativeDenoiser.learned,
    "composable": lambda den, x_t, t: comb.uniform_weights(len(den.names), x_t),
    "no_spatial": lambda den, x_t, t: comb.spatial_mean(den.learned(x_t, t)),
    "no_temporal": _first_step_weights,
}


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] images [B, 3, H, W] -> uint8 [B, H, W, 3], truncating like the official scripts."""
    x = ((images.float().permute(0, 2, 3, 1).cpu().numpy() + 1.0) * 127.5)
    return np.clip(x, 0, 255).astype(np.uint8)


@torch.no_grad()
def generate(
    model: CollaborativeModel,
    conditions: Mapping[str, Any],
    *,
    mode: str = "collaborative",
    rule: str | None = None,
    sampler: str = "ddim",
    steps: int = 50,
    eta: float = 1.0,
    seed: int | None = 0,
    batch_size: int = 1,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    noise: NoiseFn | None = None,
    callback: Callable[[CollabStep], None] | None = None,
    contexts: Mapping[str, torch.Tensor] | None = None,
    collaborators: Mapping[str, torch.nn.Module] | None = None,
    decode: bool = True,
    strength: Mapping[str, Any] | None = None,
    window: Mapping[str, tuple[float, float]] | None = None,
) -> GenerationResult:
    """Sample images from raw conditions {modality name: prompt / mask / list of them}.

    Modalities present in `conditions` take part; one alone means that collaborator alone.
    `rule` defaults to the model config's (official checkpoints: "official"); `sampler` is a key
    of `collab.samplers.SAMPLERS`, `mode` one of `MODE_WEIGHTS`.
    Randomness comes only from `generator` (or a CPU generator seeded with `seed`, a fresh seed when
    None); x_T and the per-step noise are drawn on the CPU so a seed gives the same image on every
    device. The settings record the seed the generator started from (`initial_seed()`), also for a
    given generator: it reproduces the run when that generator was freshly seeded.
    `contexts` (precomputed encoder outputs) override raw conditions, and `collaborators` stands in
    for some of the model's collaborators in this call only: both are how edits are sampled.
    `strength` {name: number or [H, W] map} multiplies a modality's weight after the softmax and
    the rule, and the weights renormalise per pixel; `window` {name: (start, end)} is the part of
    the run (0 = first step, 1 = last) in which it takes part (`combination.make_steering`).
    """
    # 1. validate the request (collab.validate: every error names the parameter, value and bounds)
    steps, eta, seed, batch_size, rule = validate.generate_args(
        model, conditions, mode=mode, rule=rule, sampler=sampler, steps=steps, eta=eta, seed=seed,
        batch_size=batch_size, generator=generator, x_T=x_T, noise=noise, callback=callback, contexts=contexts,
        collaborators=collaborators, decode=decode)
    names = _taking_part(model, conditions, contexts)
    schedule = SamplingSchedule.uniform(model.schedule, steps)
    # 2. encode the conditions once, repeat over the batch
    ctx = {n: _context(model, n, conditions, contexts, batch_size) for n in names}
    denoiser = _denoiser(model, ctx, mode, rule, collaborators, strength, window, schedule)
    # 3. start code and noise, from one CPU generator
    generator = generator if generator is not None else _seeded_generator(seed)
    if x_T is None:
        x_T = torch.randn(model.latent_shape(batch_size), generator=generator, device=generator.device)
    # 4. sample
    z0 = SAMPLERS[sampler](denoiser.predict, x_T.to(model.device, torch.float32), schedule, eta=eta,
                           noise=noise or gaussian_noise(generator), callback=_observer(callback, names, len(schedule)))
    if not torch.isfinite(z0).all():  # never a silent black image
        raise RuntimeError("sampling produced NaN or infinite latents (non-finite weights or a float16 overflow?)")
    # 5. decode, and record what was done
    settings = GenerationSettings(names, mode, rule, sampler, steps, SAMPLERS[sampler].recorded_eta(eta),
                                  generator.initial_seed(), batch_size,
                                  str(model.collaborators[names[0]].dtype).replace("torch.", ""),
                                  tuple(int(t) for t in schedule.timesteps), *denoiser.steering.record())
    images = to_uint8(model.decode(z0)) if decode else np.zeros((0,), dtype=np.uint8)
    return GenerationResult(images, z0, settings)


def relative_strength(model: CollaborativeModel, factors: Mapping[str, Any]) -> dict[str, Any]:
    """Strengths given as multiples of the model's default strengths (1 = the model's default mix),
    in the absolute form `generate(strength=)` takes (which replaces a default rather than scaling it)."""
    return {n: f * model.config.modality(n).strength for n, f in factors.items()}


def _denoiser(model: CollaborativeModel, ctx: Mapping[str, torch.Tensor], mode: str, rule: str,
              collaborators, strength, window, schedule: SamplingSchedule) -> CollaborativeDenoiser:
    """The run's denoiser: the mode's mix of the collaborators, steered by the caller's strengths and
    windows over the model's default strengths (collaborative mode only)."""
    names = tuple(ctx)
    if mode == "collaborative":
        defaults = {n: model.config.modality(n).strength for n in names if model.config.modality(n).strength != 1.0}
        strength = {**defaults, **(strength or {})}
    steering = comb.make_steering(names, strength, window, len(schedule), model.latent_shape(1)[-2:])
    return CollaborativeDenoiser(model, ctx, mode, rule, collaborators=collaborators, steering=steering,
                                 step_of={int(t): i for i, t in enumerate(schedule.timesteps)})


@torch.no_grad()
def invert(model: CollaborativeModel, z0: torch.Tensor, contexts: Mapping[str, torch.Tensor], *, steps: int = 50,
           mode: str = "collaborative", rule: str | None = None,
           collaborators: Mapping[str, torch.nn.Module] | None = None,
           strength: Mapping[str, Any] | None = None) -> torch.Tensor:
    """DDIM inversion of a (scaled) latent under the given contexts, collaborators and strengths: the
    x_T from which `generate(..., contexts=contexts, x_T=x_T, eta=0, steps=steps)` with the same
    strengths returns (nearly) z0."""
    from collab.samplers import invert_ddim

    rule = comb.validate_rule(rule or model.config.default_rule)
    steps = validate.integer("steps", steps, 1, model.config.timesteps)
    names = _taking_part(model, {}, contexts)
    schedule = SamplingSchedule.uniform(model.schedule, steps)
    ctx = {n: contexts[n] for n in names}
    denoiser = _denoiser(model, ctx, mode, rule, collaborators, strength, None, schedule)
    return invert_ddim(denoiser.predict, z0.to(model.device, torch.float32), schedule)


def _taking_part(model: CollaborativeModel, conditions: Mapping[str, Any],
                 contexts: Mapping[str, torch.Tensor] | None) -> tuple[str, ...]:
    """The modalities of the run, in the model's order."""
    unknown = [n for n in (*conditions, *(contexts or {})) if n not in model.names]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; this model has {', '.join(model.names)}")
    names = tuple(n for n in model.names if n in conditions or (contexts and n in contexts))
    if not names:
        raise ValueError(f"give at least one condition among {', '.join(model.names)}")
    return names


def _context(model: CollaborativeModel, name: str, conditions: Mapping[str, Any],
             contexts: Mapping[str, torch.Tensor] | None, batch_size: int) -> torch.Tensor:
    """A given context, or the encoded raw condition(s), repeated over the batch when single."""
    if contexts and name in contexts:
        c = contexts[name]
    else:
        raw = conditions[name]
        c = model.encode_condition(name, list(raw) if isinstance(raw, (list, tuple)) else [raw])
    ctx = c.expand(batch_size, -1, -1) if c.shape[0] == 1 else c
    if ctx.shape[0] != batch_size:
        raise ValueError(f"{name}: got {c.shape[0]} conditions for a batch of {batch_size}")
    return ctx


def _seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator from `seed`, or from a fresh one inside the seed bounds (0 .. 2^63 - 1), so
    that the recorded seed can be given back as `seed=` to repeat the run."""
    if seed is None:
        seed = torch.Generator("cpu").seed() % 2**63
    return torch.Generator("cpu").manual_seed(seed)


def _observer(callback: Callable[[CollabStep], None] | None, names: tuple[str, ...],
              num_steps: int) -> Callable[[StepInfo], None] | None:
    """The sampler's step hook: a CollabStep with the weights the step used, per modality."""
    if callback is None:
        return None

    def on_step(info: StepInfo) -> None:
        w = info.weights
        influence = {n: w[i] for i, n in enumerate(names)} if w is not None else {}
        callback(CollabStep(info.index, num_steps, info.t, info.x_t, info.pred_x0, info.x_prev, influence))

    return on_step
