"""Training recipes: every hyper-parameter of every stage, read from YAML, overridable from the
command line (`--set ldm.lr=1e-4 --set vae.steps=500`).

A recipe file has a few top-level keys and one section per stage:

    name: demo
    model: demo                 # the model config to train (shipped name or YAML path)
    seed: 0
    data: {source: world, root: null, num_images: 8000, test_size: 500, size: 128, workers: 0, cache_latents: true}
    vae: {steps: 2000, lr: 4.0e-4, batch_size: 8, warmup: 50, crop: 64}
    decoder: {...}  ldm: {...}  diffusers: {...}  evaluator: {...}

Stage keys are LoopConfig's (steps, lr, batch_size, warmup, ema_decay, grad_clip, accumulate,
weight_decay, betas, scale_lr, schedule, save_every, log_every, sample_every) plus the stage's own:
vae.crop, vae.kl_weight, ldm.p2_gamma, diffusers.p2_gamma.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

from collab.train.loop import LoopConfig

RECIPES_DIR = Path(__file__).parent / "recipes"
STAGES = ("vae", "decoder", "ldm", "diffusers", "evaluator")
# section.key in a recipe file -> Recipe field
EXTRAS = {"vae.crop": "vae_crop", "vae.kl_weight": "vae_kl_weight", "ldm.p2_gamma": "p2_gamma",
          "diffusers.p2_gamma": "diffuser_p2_gamma", "data.source": "data_source", "data.root": "data_root", "data.num_images": "num_images",
          "data.test_size": "test_size", "data.size": "size", "data.workers": "workers",
          "data.cache_latents": "cache_latents"}


class RecipeError(ValueError):
    """A recipe key or value that does not fit, naming it and what is allowed."""


@dataclass(frozen=True)
class Recipe:
    """The defaults are the face-world demo (`recipes/demo.yaml` holds the same numbers)."""
    name: str = "demo"
    model: str = "demo"
    data_source: str = "world"  # world: render the face world into <run>/data; layout: read data_root
    data_root: str | None = None  # the root of an official layout (collab/data/layout.py)
    num_images: int = 8000
    test_size: int = 500
    size: int = 128
    seed: int = 0
    workers: int = 0
    cache_latents: bool = True
    # Demo v2, sized for about 3 hours of 2 CPU cores (the VAE by the study in docs/results/vae_study:
    # f=4, no normalisation, whole faces, the official first stage's Adam betas).
    vae: LoopConfig = LoopConfig(steps=5000, lr=4e-4, batch_size=4, warmup=50, betas=(0.5, 0.9))
    vae_crop: int = 0  # whole faces: crops taught the old VAE statistics it never met at inference
    vae_kl_weight: float = 1e-6
    # then the decoder alone on cached latents, whole faces, decaying rate: it does not move the latent
    # space the collaborators learn, so it runs beside them (`--until decoder` in its own process)
    decoder: LoopConfig = LoopConfig(steps=800, lr=2e-4, batch_size=4, warmup=50, betas=(0.5, 0.9),
                                     schedule="cosine")
    # every collaborator the same steps (v1's text collaborator had a third of the mask's and lost the mix)
    ldm: LoopConfig = LoopConfig(steps=4000, lr=5e-4, batch_size=32, ema_decay=0.999, warmup=100, sample_every=1000)
    diffusers: LoopConfig = LoopConfig(steps=1000, lr=5e-4, batch_size=32, warmup=50)
    evaluator: LoopConfig = LoopConfig(steps=1500, lr=2e-3, batch_size=16, warmup=75, schedule="cosine",
                                       weight_decay=1e-4, grad_clip=0.0, log_every=100, save_every=250)
    p2_gamma: float = 0.0  # P2 weighting of the collaborators' loss
    diffuser_p2_gamma: float = 0.0  # and of Algorithm 1's loss (the diffusers)

    def __post_init__(self) -> None:
        if self.data_source not in ("world", "layout"):
            raise RecipeError(f"data.source {self.data_source!r} is not one of world, layout")

    def scaled(self, factor: float) -> Recipe:
        """Every stage's step count times `factor` (for smoke runs and tests)."""
        def s(c: LoopConfig) -> LoopConfig:
            return replace(c, steps=max(2, int(c.steps * factor)), warmup=max(1, int(c.warmup * factor)),
                           save_every=max(1, int(c.save_every * factor)), log_every=max(1, int(c.log_every * factor)),
                           sample_every=int(c.sample_every * factor) and max(1, int(c.sample_every * factor)))
        return replace(self, vae=s(self.vae), decoder=s(self.decoder), ldm=s(self.ldm), diffusers=s(self.diffusers))

    def with_overrides(self, overrides: list[str]) -> Recipe:
        """`key=value` strings (`ldm.lr=1e-4`, `seed=3`, `data.root=/data/celeba`) applied in order."""
        recipe = self
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise RecipeError(f"--set {item!r}: expected KEY=VALUE, e.g. ldm.lr=1e-4")
            recipe = recipe.set(key.strip(), value.strip())
        return recipe

    def set(self, key: str, value) -> Recipe:
        """One recipe value by its file key (`vae.lr`, `ldm.p2_gamma`, `data.root`, `seed`)."""
        if key in EXTRAS:
            key = EXTRAS[key]
        section, _, sub = key.partition(".")
        if sub and section in STAGES:
            stage: LoopConfig = getattr(self, section)
            types = {f.name: f.type for f in fields(LoopConfig)}
            if sub not in types:
                allowed = sorted(types) + [k.split(".")[1] for k in EXTRAS if k.startswith(section + ".")]
                raise RecipeError(f"unknown recipe key {key!r}; a {section} stage has {', '.join(allowed)}")
            new = convert(types[sub], value, key)
            try:
                return replace(self, **{section: replace(stage, **{sub: new})})
            except (TypeError, ValueError) as e:
                raise RecipeError(f"{key}={value!r}: {e}") from e
        types = {f.name: f.type for f in fields(Recipe) if f.name not in STAGES}
        if sub or key not in types:
            known = sorted(k for k in types if k not in EXTRAS.values()) + sorted(EXTRAS)
            raise RecipeError(f"unknown recipe key {key!r}; known: {', '.join(known)} and "
                              f"<stage>.<key> for the stages {', '.join(STAGES)}")
        new = convert(types[key], value, key)
        try:
            return replace(self, **{key: new})
        except RecipeError as e:
            raise RecipeError(f"{key}={value!r}: {e}") from None

    def to_yaml_dict(self) -> dict:
        """The recipe in its file layout (what `load_recipe` reads back)."""
        out: dict = {"name": self.name, "model": self.model, "seed": self.seed, "data": {}}
        back = {v: k for k, v in EXTRAS.items()}
        for f in fields(Recipe):
            if f.name in back:
                section, key = back[f.name].split(".")
                out.setdefault(section, {})[key] = getattr(self, f.name)
        for stage in STAGES:
            cfg = getattr(self, stage)
            out[stage] = {**{f.name: _plain(getattr(cfg, f.name)) for f in fields(LoopConfig) if f.name != "quiet"},
                          **out.get(stage, {})}
        return out


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def convert(annotation: str, value, key: str):
    """A YAML or command-line value as the field's type, or a message naming the key and the type."""
    ann = str(annotation).replace(" ", "")
    if ann.endswith("|None") and (value is None or str(value).lower() in ("null", "none", "")):
        return None
    ann = ann.removesuffix("|None")
    try:
        if ann == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if ann == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if ann == "float":
            return float(value)
        if ann.startswith("tuple"):
            parts = value if isinstance(value, (list, tuple)) else str(value).strip("[]()").split(",")
            return tuple(float(p) for p in parts)
        return str(value)
    except (TypeError, ValueError):
        raise RecipeError(f"{key}: {value!r} is not a valid {ann}") from None


def load_recipe(source: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """A shipped recipe by name (`demo`, `official_256`, `official_512`) or a YAML file, then overrides."""
    path = Path(source)
    if not path.suffix:
        path = RECIPES_DIR / f"{source}.yaml"
        if not path.exists():
            shipped = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
            raise RecipeError(f"unknown recipe {source!r}: give one of {', '.join(shipped)} or a YAML file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: cannot read the recipe ({e})") from e
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, found {type(raw).__name__}")
    recipe = Recipe()
    for key, value in raw.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                recipe = recipe.set(f"{key}.{sub}", v)
        else:
            recipe = recipe.set(key, value)
    return recipe.with_overrides(list(overrides))
