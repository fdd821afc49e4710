"""Multi-modal editing of a real image (Algorithm 3 of the paper): Imagic per modality, then
collaborative sampling with the edited collaborators.

For every modality m with a target condition c_tgt:
  1. embedding optimisation: c_opt = argmin_c E_{t,eps} ||eps - eps_m(x_t, t, c)||^2 from c_tgt,
     collaborator frozen (official: Adam lr 1e-3, 500 iterations);
  2. collaborator fine-tuning with c_opt fixed, same loss (official: Adam lr 1e-6, 1000 iterations);
  3. sampling with c = alpha c_tgt + (1 - alpha) c_opt through the fine-tuned collaborator, all
     modalities mixed by the (unchanged) dynamic diffusers.
Algorithm 3 runs stages 1-2 for every modality that takes part, so a modality kept unchanged (the
input's own mask beside a text edit) is tuned on the image too, its c_tgt being its own condition
(`tune_kept`, on by default): an untuned collaborator would draw another person into the mix.
x_t comes from the input image's latent, so the fine-tuned model learns to reproduce that image.

The shared model is never modified: a fine-tuned collaborator exists only as the set of tensors that
changed (`ModalityEdit.params`), in its own module object that shares all other tensors with the
model (`CollaborativeModel.with_tensors`), so concurrent edits cannot interfere. With
`trainable="all"` (the official choice) that set is the whole collaborator; `trainable="attention"`
fine-tunes only the transformer blocks, a far smaller delta.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from collab import validate
from collab.model import CollaborativeModel
from collab.pipeline import CollabStep, GenerationResult, generate, invert, relative_strength

TRAINABLE = ("all", "attention")
EDIT_STARTS = ("inversion", "noise")  # where sampling starts: the input's DDIM inversion, or fresh noise
MAX_ITERATIONS = 100_000  # per stage; the official settings use 500 and 1000


EDIT_PRESETS = ("fast", "faithful")  # the optimisation presets, one name each in the CLI, app and eval
PRESET_ALIASES = {"official": "faithful"}  # accepted old names


def preset_name(name: object) -> object:
    """The preset's one name for an accepted alias; anything else unchanged (for the caller's check)."""
    return PRESET_ALIASES.get(name, name) if isinstance(name, str) else name


@dataclass(frozen=True)
class EditSettings:
    embed_steps: int = 500
    embed_lr: float = 1e-3
    finetune_steps: int = 1000
    finetune_lr: float = 1e-6
    trainable: str = "all"
    seed: int = 0
    tune_kept: bool = True  # stages 1-2 also for kept modalities (Algorithm 3: every modality)

    @classmethod
    def faithful(cls) -> EditSettings:
        """The official settings: 500 + 1000 iterations, lr 1e-3 / 1e-6, the whole collaborator."""
        return cls()

    @classmethod
    def official(cls) -> EditSettings:
        """Old name of `faithful`."""
        return cls.faithful()

    @classmethod
    def fast(cls) -> EditSettings:
        """Sized for a CPU: fewer iterations, larger steps, attention-only fine-tuning."""
        return cls(embed_steps=100, embed_lr=1e-2, finetune_steps=150, finetune_lr=1e-4, trainable="attention")

    @classmethod
    def preset(cls, name: str) -> EditSettings:
        """The settings of a preset in EDIT_PRESETS (or an alias: "official" = "faithful")."""
        return getattr(cls, validate.choice("edit preset", preset_name(name), EDIT_PRESETS))()

    def validate(self) -> EditSettings:
        """The settings with canonical values (numpy scalars -> Python), or an error naming the field."""
        validate.choice("trainable", self.trainable, TRAINABLE)
        lrs = {k: validate.real(k, getattr(self, k), 0.0, 1.0) for k in ("embed_lr", "finetune_lr")}
        for k, v in lrs.items():
            if v <= 0:
                raise ValueError(f"{k} must be > 0, got {v}")
        return replace(self, **lrs, embed_steps=validate.integer("embed_steps", self.embed_steps, 0, MAX_ITERATIONS),
                       finetune_steps=validate.integer("finetune_steps", self.finetune_steps, 0, MAX_ITERATIONS),
                       seed=validate.seed_value("seed", self.seed),
                       tune_kept=validate.flag("tune_kept", self.tune_kept))


class EditCancelled(RuntimeError):
    """Raised when the cancel callback asked to stop; nothing is kept."""


@dataclass
class ModalityEdit:
    name: str
    target: torch.Tensor  # c_tgt [1, L, D]
    optimized: torch.Tensor  # c_opt [1, L, D]
    params: dict[str, torch.Tensor]  # fine-tuned tensors of the collaborator (only those trained)
    kept: bool = False  # a modality kept as it is, tuned on the image: c_tgt is its own condition

    def context(self, alpha: float) -> torch.Tensor:
        """alpha c_tgt + (1 - alpha) c_opt (alpha = 0 reconstructs the input, 1 is the target)."""
        return alpha * self.target + (1 - alpha) * self.optimized


@dataclass
class EditSession:
    """Stages 1-2 done; sample any alpha / seed from here without re-optimising."""

    model_name: str
    image: np.ndarray  # the input after crop/resize, uint8 [H, W, 3]
    latent: torch.Tensor  # z_0 of the input (scaled) [1, C, h, w]
    edits: dict[str, ModalityEdit]
    settings: EditSettings
    kept: dict[str, torch.Tensor] = field(default_factory=dict)  # contexts of unedited modalities
    _starts: dict = field(default_factory=dict, repr=False)  # DDIM inversions of the input, by (steps, rule, mode)

    @property
    def edited(self) -> list[str]:
        """The modalities given a target (not the kept ones tuned on the image)."""
        return [n for n, e in self.edits.items() if not e.kept]

    def steering(self, model: CollaborativeModel, factor: float) -> dict[str, Any] | None:
        """`sample(strength=)` giving the edited modalities `factor` times the model's default strength
        against the kept ones; None at 1 (the model's default mix)."""
        return relative_strength(model, dict.fromkeys(self.edited, factor)) if factor != 1 else None

    def sample(self, model: CollaborativeModel, alpha: float | Mapping[str, float], *, steps: int = 50,
               eta: float = 0.0, seed: int = 0, rule: str | None = None, mode: str = "collaborative",
               callback: Callable[[CollabStep], None] | None = None, start: str = "inversion",
               strength: Mapping[str, Any] | None = None) -> GenerationResult:
        """The edit at `alpha` (0 = the input, 1 = the target). `start`: "inversion" (default) samples
        from the DDIM inversion of the input under the alpha-0 contexts and tuned collaborators, so
        with eta 0 alpha 0 returns the input and every alpha keeps what the edit does not change;
        "noise" is the paper's Algorithm 3 as written (a fresh x_T from `seed`). `strength` {name: number
        or map} steers the mix as in `generate` (collaborative mode), in the inversion too, so alpha 0
        still returns the input: e.g. {"text": 2} lets a text edit count for more against a kept mask."""
        validate.choice("start", start, EDIT_STARTS)
        if model.config.name != self.model_name:
            raise ValueError(f"this edit was made with model {self.model_name}, not {model.config.name}")
        targets = self.edited
        if isinstance(alpha, Mapping) and not set(targets) <= set(alpha) <= set(self.edits):
            raise ValueError(f"alpha must give a value for each edited modality ({', '.join(targets)}), "
                             f"got {sorted(map(str, alpha))}")
        given = {n: validate.real(f"alpha for {n} (official sweeps use 0..2.5)",
                                  alpha[n] if isinstance(alpha, Mapping) else alpha, 0.0, 3.0)
                 for n in self.edits if not isinstance(alpha, Mapping) or n in alpha}
        # a tuned kept modality not named in a mapping follows the edited ones (their mean alpha)
        mean = sum(given[n] for n in targets) / max(len(targets), 1)
        alphas = {n: given.get(n, mean) for n in self.edits}
        contexts = {**self.kept, **{n: e.context(alphas[n]) for n, e in self.edits.items()}}
        nets = {n: model.with_tensors(n, e.params) for n, e in self.edits.items()}
        x_T = self._inverted(model, nets, steps, rule, mode, strength) if start == "inversion" else None
        result = generate(model, {}, contexts=contexts, collaborators=nets, steps=steps, eta=eta,
                          seed=seed, rule=rule, mode=mode, callback=callback, x_T=x_T, strength=strength)
        result.extras["alpha"] = alphas
        result.extras["start"] = start
        return result

    def _inverted(self, model: CollaborativeModel, nets: dict, steps: int, rule: str | None, mode: str,
                  strength: Mapping[str, Any] | None = None) -> torch.Tensor:
        """x_T of the input under the reconstruction (alpha 0) contexts, once per steps/rule/mode/strength."""
        key = (steps, rule, mode, _strength_key(strength))
        if key not in self._starts:
            contexts = {**self.kept, **{n: e.optimized for n, e in self.edits.items()}}
            self._starts[key] = invert(model, self.latent, contexts, steps=steps, rule=rule, mode=mode,
                                       collaborators=nets, strength=strength).cpu()
        return self._starts[key]

    def alpha_strip(self, model: CollaborativeModel, alphas: Sequence[float], **kwargs: Any) -> list[GenerationResult]:
        return [self.sample(model, a, **kwargs) for a in alphas]

    # ------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """One safetensors file (contexts, fine-tuned tensors, input) with the settings as metadata."""
        path = Path(path)
        tensors = {"input.image": torch.from_numpy(self.image.copy()), "input.latent": self.latent}
        for n, e in self.edits.items():
            tensors[f"edit.{n}.target"] = e.target
            tensors[f"edit.{n}.optimized"] = e.optimized
            tensors.update({f"edit.{n}.params.{k}": v for k, v in e.params.items()})
        tensors.update({f"kept.{n}": v for n, v in self.kept.items()})
        meta = {"format": "collab-edit/v1", "model": self.model_name, "settings": json.dumps(asdict(self.settings)),
                "modalities": json.dumps(sorted(self.edits)),
                "tuned_kept": json.dumps(sorted(n for n, e in self.edits.items() if e.kept))}
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=meta)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> EditSession:
        from safetensors import safe_open

        path = validate.file_path("session", path, "edit session file")
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            if meta.get("format") != "collab-edit/v1":
                raise ValueError("no collab-edit/v1 format mark")
            t = load_file(path)
            bad = validate.first_non_finite(t)
            if bad is not None:
                raise ValueError(f"tensor {bad!r} holds NaN or infinite values")
            edits, tuned_kept = {}, set(json.loads(meta.get("tuned_kept", "[]")))
            for n in json.loads(meta["modalities"]):
                pre = f"edit.{n}.params."
                edits[n] = ModalityEdit(n, t[f"edit.{n}.target"], t[f"edit.{n}.optimized"],
                                        {k[len(pre):]: v for k, v in t.items() if k.startswith(pre)}, n in tuned_kept)
            kept = {k[5:]: v for k, v in t.items() if k.startswith("kept.")}
            settings = EditSettings(**json.loads(meta["settings"])).validate()
            return cls(meta["model"], t["input.image"].numpy(), t["input.latent"], edits, settings, kept)
        except Exception as e:  # safetensors, json and missing keys all mean the same: not a usable session
            raise ValueError(f"{path} is not a usable saved collab edit session ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------- input image


MAX_IMAGE_PIXELS = 4096 * 4096


def prepare_image(source: Any, size: int, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, str | None]:
    """Any image (path, PIL, array) -> RGB uint8 [size, size, 3], centre-cropped and resized.

    Returns the image and a note for the user when it had to be cropped or resized. Images above
    `max_pixels` are refused before they are decoded.
    """
    size = validate.integer("size", size, 1, 4096)
    if isinstance(source, np.ndarray):
        validate.numeric_array("image", source)
        if source.dtype != np.uint8 or source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (3, 4)):
            raise ValueError(f"an image array must be uint8 [H, W, 3] (or [H, W] grey, [H, W, 4] RGBA), "
                             f"got {validate.show(source)}")
    elif not isinstance(source, Image.Image):
        source = validate.file_path("image", source, "image file")
    try:
        img = source if isinstance(source, Image.Image) else (
            Image.fromarray(source) if isinstance(source, np.ndarray) else Image.open(source))
        if img.size[0] * img.size[1] > max_pixels:
            raise ValueError(f"the image is {img.size[0]}x{img.size[1]} pixels, more than the {max_pixels:,} "
                             "accepted; downscale it first")
        img.load()
    except (FileNotFoundError, ValueError):
        raise
    except Exception as e:
        raise ValueError(f"cannot read the input image ({e})") from e
    note = []
    if img.mode != "RGB":
        note.append(f"converted from {img.mode} to RGB")
        img = img.convert("RGB")
    w, h = img.size
    if w != h:
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        note.append(f"centre-cropped from {w}x{h} to {s}x{s}")
    if img.size[0] != size:
        note.append(f"resized from {img.size[0]} to {size}")
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img), ("; ".join(note) or None)


# ---------------------------------------------------------------- stages 1 and 2


def _trainable_names(net: torch.nn.Module, which: str) -> list[str]:
    names = [n for n, _ in net.named_parameters()]
    return names if which == "all" else [n for n in names if ".transformer_blocks." in n]


def _denoising_loss(net, z0, context, g, schedule_abar) -> torch.Tensor:
    t = torch.randint(0, schedule_abar.shape[0], (1,), generator=g)
    noise = torch.randn(z0.shape, generator=g)
    a = schedule_abar[t].float().view(1, 1, 1, 1)
    x_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
    return F.mse_loss(net(x_t, t, context), noise)


def _strength_key(strength: Mapping[str, Any] | None) -> tuple:
    """A hashable key of strengths (numbers or maps) for the inversion cache."""
    if not strength:
        return ()
    return tuple(sorted((n, float(v) if np.ndim(v) == 0 else np.asarray(v, dtype=np.float64).tobytes())
                        for n, v in strength.items()))


def edit(model: CollaborativeModel, image: Any, targets: Mapping[str, Any], *,
         settings: EditSettings | None = None, keep: Mapping[str, Any] | None = None,
         progress: Callable[[str, int, int, float], None] | None = None,
         cancel: Callable[[], bool] | None = None) -> EditSession:
    """Run stages 1-2 for every modality in `targets` (raw conditions) and return an EditSession.

    `keep`: raw conditions of modalities that take part in sampling unedited (e.g. the input's own
    mask). `progress(stage, step, total, loss)` is called every iteration; `cancel()` is polled between
    iterations and raises EditCancelled when it returns True (nothing is kept).
    """
    settings = (settings or EditSettings.faithful()).validate()
    validate.mapping("targets", targets, "{modality name: target condition}")
    if keep is not None:
        validate.mapping("keep", keep, "{modality name: condition}")
    validate.callable_or_none("progress", progress)
    validate.callable_or_none("cancel", cancel)
    if not targets:
        raise ValueError(f"give at least one target condition among {', '.join(model.names)}")
    unknown = [n for n in (*targets, *(keep or {})) if n not in model.names]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; this model has {', '.join(model.names)}")
    pixels, _ = prepare_image(image, model.config.image_size)
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    z0 = model.encode(x).float()
    abar = model.schedule.alphas_cumprod
    g = torch.Generator().manual_seed(settings.seed)
    edits = {}
    kept_raw = {n: raw for n, raw in (keep or {}).items() if n not in targets}  # a target wins over a keep
    to_tune = {**targets, **kept_raw} if settings.tune_kept else dict(targets)
    for name, raw in to_tune.items():
        net = model.collaborators[name]
        c_tgt = model.encode_condition(name, [raw]).float()
        # 1. optimise the embedding, collaborator frozen
        c = c_tgt.clone().requires_grad_(True)
        _optimise([c], settings.embed_lr, settings.embed_steps, lambda: _denoising_loss(net, z0, c, g, abar),
                  f"{name}: embedding", progress, cancel)
        c_opt = c.detach()
        # 2. fine-tune the collaborator with c_opt fixed, on copies of the trained tensors only
        base = dict(net.named_parameters())
        names = _trainable_names(net, settings.trainable)
        tuned = model.with_tensors(name, {n: base[n].detach().float().clone() for n in names})
        params = {n: p.requires_grad_(True) for n, p in tuned.named_parameters() if n in set(names)}
        _optimise(list(params.values()), settings.finetune_lr, settings.finetune_steps,
                  lambda: _denoising_loss(tuned, z0, c_opt, g, abar), f"{name}: fine-tuning", progress, cancel)
        edits[name] = ModalityEdit(name, c_tgt.detach(), c_opt, {k: v.detach() for k, v in params.items()},
                                   kept=name not in targets)
    kept = {n: model.encode_condition(n, [raw]) for n, raw in (keep or {}).items() if n not in edits}
    return EditSession(model.config.name, pixels, z0.detach(), edits, settings, kept)


def _optimise(params: list[torch.Tensor], lr: float, steps: int, loss_fn: Callable[[], torch.Tensor], stage: str,
              progress, cancel) -> None:
    """Adam on `params` for `steps` iterations, polling `cancel` and reporting every iteration."""
    opt = torch.optim.Adam(params, lr=lr)
    for i in range(steps):
        _poll(cancel)
        with torch.enable_grad():
            loss = loss_fn()
            opt.zero_grad()
            loss.backward()
        opt.step()
        _report(progress, stage, i, steps, loss)


def _poll(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise EditCancelled("edit cancelled")


def _report(progress, stage: str, i: int, total: int, loss: torch.Tensor) -> None:
    if progress is not None:
        value = float(loss.detach())
        progress(stage, i + 1, total, value if math.isfinite(value) else float("nan"))
