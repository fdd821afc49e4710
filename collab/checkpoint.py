"""Loading and saving weights: official Lightning `.ckpt` files and the project's safetensors format.

The one official-key mapping lives here (`official_prefixes`). Models are built on the meta device
and loaded with `assign=True`, so an 800M-parameter checkpoint is never held twice in memory.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping

import torch
from safetensors.torch import load_file

from collab import validate
from collab.config import ModelConfig, check_config, load_config, shipped_configs
from collab.model import CollaborativeModel
from collab.tokenizer import WordPieceTokenizer, find_vocab

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"
VOCAB_NAME = "vocab.txt"
TRUST_FLAG = "trusted=True (CLI: --trust-checkpoint)"
_TRAINING_ONLY = ("loss.", "model_ema.", "logvar")  # training state a real checkpoint may carry


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded as asked, with the reason and what would fit."""


# ---------------------------------------------------------------- reading files


def read_state_dict(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a .ckpt/.pt/.pth (Lightning `state_dict` inside or a plain one) or .safetensors.

    Pickle-based files are opened with `weights_only=True` (no code execution) and memory-mapped.
    """
    path = validate.file_path("checkpoint", path, "checkpoint file")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        obj = _torch_load(path, weights_only=not trusted)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} contains Python objects that only load by executing pickled code "
            f"({str(e).splitlines()[0][:200]}). If you trust this file, pass {TRUST_FLAG}.") from e
    except Exception as e:  # truncated or damaged files fail in torch.load in many ways (IndexError, ...)
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {first})") from e
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors found (top-level keys: "
                              f"{sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__})")
    return dict(sd)


def _torch_load(path: Path, weights_only: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):  # legacy (non-zip) files cannot be memory-mapped
            raise
        return torch.load(path, map_location="cpu", weights_only=weights_only)


# ---------------------------------------------------------------- the official key map

SCHEDULE_KEYS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                 "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                 "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                 "posterior_mean_coef1", "posterior_mean_coef2")
LAYOUTS = ("compose", "unimodal", "vae")


def official_prefixes(cfg: ModelConfig, layout: str) -> list[tuple[str, str]]:
    """(official prefix, our prefix) pairs for one official checkpoint layout.

    compose: `*_codiff_*.ckpt`, every branch under `model.{branch}_unet`, `..._confidence_predictor`,
    `cond_stage_model.{branch}_cond_stage_model`; unimodal: `*_text.ckpt` / `*_mask.ckpt` (cfg must
    hold that one modality); vae: `*_vae.ckpt`.
    """
    if layout == "vae":
        return [("", "vae.")]
    pairs = [("first_stage_model.", "vae.")]
    if layout == "unimodal":
        (m,) = cfg.modalities
        return pairs + [("model.diffusion_model.", f"collaborators.{m.name}."),
                        ("cond_stage_model.", f"encoders.{m.name}.")]
    for m in cfg.modalities:
        b = m.official_name or m.name
        pairs += [(f"model.{b}_unet.diffusion_model.", f"collaborators.{m.name}."),
                  (f"cond_stage_model.{b}_cond_stage_model.", f"encoders.{m.name}.")]
        if m.diffuser is not None:
            pairs.append((f"model.{b}_confidence_predictor.diffusion_model.", f"diffusers.{m.name}."))
    return pairs


def detect_layout(keys: Iterable[str]) -> str:
    keys = list(keys)
    if any(k.startswith("model.") and "_unet.diffusion_model." in k for k in keys):
        return "compose"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "unimodal"
    if any(k.startswith(("encoder.", "decoder.")) for k in keys):
        return "vae"
    raise CheckpointError("not a Collaborative Diffusion / LDM checkpoint: no model.*, first_stage_model.* or "
                          f"encoder.* keys (first keys: {keys[:5]})")


def unimodal_kind(keys: Iterable[str]) -> str:
    """Which condition a uni-modal checkpoint was trained with, from its encoder keys."""
    keys = list(keys)
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "text"
    if any(k.startswith("cond_stage_model.linear.") for k in keys):
        return "mask"
    raise CheckpointError("uni-modal checkpoint with an unknown condition encoder (no cond_stage_model.transformer "
                          "or cond_stage_model.linear keys)")


def to_ours(sd: Mapping[str, torch.Tensor], pairs: list[tuple[str, str]]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename official keys; returns (mapped, keys that matched no prefix)."""
    ordered = sorted(pairs, key=lambda p: -len(p[0]))  # longest prefix wins
    mapped, unmatched = {}, []
    for k, v in sd.items():
        for off, ours in ordered:
            if k.startswith(off):
                mapped[ours + k[len(off):]] = v
                break
        else:
            unmatched.append(k)
    return mapped, unmatched


def to_official(sd: Mapping[str, torch.Tensor], pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        for off, ours in sorted(pairs, key=lambda p: -len(p[1])):
            if k.startswith(ours):
                out[off + k[len(ours):]] = v
                break
    return out


def official_shapes(cfg: ModelConfig, layout: str) -> dict[str, tuple[int, ...]]:
    """Every key and shape an official checkpoint of this config and layout holds (built on meta)."""
    with torch.device("meta"):
        model = CollaborativeModel(cfg)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if layout == "vae":
        ours = {k: s for k, s in ours.items() if k.startswith("vae.")}
    elif layout == "unimodal":
        ours = {k: s for k, s in ours.items() if not k.startswith("diffusers.")}
    shapes = {k: tuple(v.shape) for k, v in to_official(
        {k: torch.empty(s, device="meta") for k, s in ours.items()}, official_prefixes(cfg, layout)).items()}
    if layout != "vae":
        shapes.update({k: (cfg.timesteps,) for k in SCHEDULE_KEYS})
    return shapes


# ---------------------------------------------------------------- checks and reports


@dataclass(frozen=True)
class KeyReport:
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # key, expected, found

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def errors(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)

    def describe(self, limit: int = 8) -> str:
        parts = []
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
                parts.append(f"{len(items)} {label} keys: {', '.join(items[:limit])}{more}")
        if self.mismatched:
            shown = "; ".join(f"{k}: expected {list(e)}, found {list(f)}" for k, e, f in self.mismatched[:limit])
            parts.append(f"{len(self.mismatched)} shape mismatches: {shown}")
        return "\n".join(parts)


def compare_keys(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> KeyReport:
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected)
    mismatched = sorted((k, tuple(expected[k]), tuple(found[k])) for k in expected
                        if k in found and tuple(expected[k]) != tuple(found[k]))
    return KeyReport(missing, unexpected, mismatched)


def _subset(cfg: ModelConfig, names: Iterable[str], with_diffusers: bool) -> ModelConfig:
    mods = tuple(m if with_diffusers else replace(m, diffuser=None) for m in cfg.modalities if m.name in set(names))
    return replace(cfg, modalities=mods)


def _config_for(cfg: ModelConfig, layout: str, sd: Mapping[str, torch.Tensor]) -> ModelConfig:
    if layout == "unimodal":
        kind = unimodal_kind(sd)
        names = [m.name for m in cfg.modalities if m.kind == kind]
        if not names:
            raise CheckpointError(f"config {cfg.name} has no {kind} modality for this uni-modal checkpoint")
        return _subset(cfg, names[:1], with_diffusers=False)
    return cfg


def closest_config(sd: Mapping[str, torch.Tensor], layout: str) -> tuple[str, KeyReport] | None:
    """The shipped config whose official key/shape set is nearest to this state_dict."""
    found = {k: tuple(v.shape) for k, v in sd.items() if not k.startswith(_TRAINING_ONLY)}
    best = None
    for name in shipped_configs():
        try:
            cfg = _config_for(load_config(name), layout, sd)
            report = compare_keys(official_shapes(cfg, layout), found)
        except (CheckpointError, ValueError):
            continue
        if best is None or report.errors < best[1].errors:
            best = (name, report)
    return best


def check_schedule(cfg: ModelConfig, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """A checkpoint trained with another noise schedule would sample wrongly without any error."""
    if "betas" not in sd:
        return
    from collab.schedule import DiffusionSchedule

    ours = DiffusionSchedule.linear(cfg.timesteps, cfg.linear_start, cfg.linear_end).official_buffers()
    for k in ("betas", "alphas_cumprod"):
        if sd[k].shape != ours[k].shape or not torch.allclose(sd[k].float(), ours[k], rtol=1e-4, atol=1e-7):
            raise CheckpointError(f"{source}: its noise schedule ({k}) differs from config {cfg.name} "
                                  f"(linear {cfg.linear_start}..{cfg.linear_end}, T={cfg.timesteps})")


# ---------------------------------------------------------------- loading


def _materialise(cfg: ModelConfig, weights: Mapping[str, torch.Tensor], source: str) -> CollaborativeModel:
    try:
        with torch.device("meta"):
            model = CollaborativeModel(cfg)
    except Exception as e:  # a config whose numbers type-check but describe no network
        raise CheckpointError(f"config {cfg.name} does not describe a buildable model ({type(e).__name__}: {e})") from e
    bad = validate.first_non_finite(weights)  # reads every weight once (memory-mapped files: from disk)
    if bad is not None:
        raise CheckpointError(f"{source}: weight {bad!r} holds NaN or infinite values; the file is damaged or "
                              "the training diverged, and it would only sample black images")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    report = compare_keys(expected, {k: tuple(v.shape) for k, v in weights.items()})
    if not report.ok:
        raise CheckpointError(f"{source} does not fit config {cfg.name}:\n{report.describe()}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()},
                          strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_official(paths: str | Path | Iterable[str | Path], config: str | Path | ModelConfig | None = None, *,
                  vocab: str | Path | None = None, trusted: bool = False, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> CollaborativeModel:
    """Official checkpoints -> model. Give a `*_codiff_mask_text.ckpt` (everything), or uni-modal
    `*_text.ckpt` / `*_mask.ckpt` files (collaborators only: single-modality or composable sampling),
    optionally with a `*_vae.ckpt`. `config` defaults to the shipped config that fits the keys."""
    if not isinstance(paths, (str, Path, list, tuple)):
        raise TypeError(f"paths must be a checkpoint path or a list of them, got {validate.show(paths)}")
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [validate.file_path("checkpoint", p) for p in paths]
    if not paths:
        raise ValueError("give at least one checkpoint file")
    files = [(p, read_state_dict(p, trusted)) for p in paths]
    layouts = [detect_layout(sd) for _, sd in files]
    cfg = _pick_config(config, files, layouts)
    weights: dict[str, torch.Tensor] = {}
    names: list[str] = []
    with_diffusers = "compose" in layouts
    for (path, sd), layout in zip(files, layouts):
        part = _config_for(cfg, layout, sd)
        check_schedule(cfg, sd, str(path))
        sd = {k: v for k, v in sd.items() if not k.startswith(_TRAINING_ONLY) and k not in SCHEDULE_KEYS}
        expected = official_shapes(part, layout)
        report = compare_keys({k: s for k, s in expected.items() if k not in SCHEDULE_KEYS},
                              {k: tuple(v.shape) for k, v in sd.items()})
        if not report.ok:
            hint = closest_config(sd, layout)
            fit = f"\nclosest shipped config: {hint[0]} ({hint[1].errors} differences)" if hint else ""
            raise CheckpointError(f"{path} ({layout} layout) does not fit config {cfg.name}:\n"
                                  f"{report.describe()}{fit}")
        mapped, _ = to_ours(sd, official_prefixes(part, layout))
        weights.update(mapped)  # later files override earlier ones (e.g. a separate VAE)
        names += [m.name for m in part.modalities if layout != "vae"]
    if not names:
        raise CheckpointError("only a VAE checkpoint was given; add a text, mask or codiff checkpoint")
    cfg = _subset(cfg, [n for n in cfg.names if n in names], with_diffusers)
    model = _materialise(cfg, weights, ", ".join(str(p) for p in paths))
    return _finish(model, vocab, device, dtype)


def _pick_config(config: str | Path | ModelConfig | None, files: list, layouts: list[str]) -> ModelConfig:
    if isinstance(config, ModelConfig):
        return check_config(config)
    if config is not None:
        return load_config(config)
    for (path, sd), layout in zip(files, layouts):
        if layout == "vae":
            continue
        hint = closest_config(sd, layout)
        if hint and hint[1].ok:
            return load_config(hint[0])
        detail = f"closest is {hint[0]} with:\n{hint[1].describe()}" if hint else "no shipped config is close"
        raise CheckpointError(f"{path}: no shipped config fits its keys ({detail}); pass config=<yaml>")
    raise CheckpointError("cannot infer a config from a VAE checkpoint alone; pass config=")


def needs_vocab(cfg: ModelConfig) -> bool:
    """Does a text encoder of this model read a WordPiece vocabulary (official BERT or trained from
    scratch)? Pre-trained encoders bring their own tokenizer."""
    from collab import kinds

    return any(kinds.kind_of(enc).needs_vocab for m in cfg.modalities for _, _, enc in m.inputs())


def _finish(model: CollaborativeModel, vocab: str | Path | None, device: str | torch.device,
            dtype: torch.dtype, own_vocab: bool = False) -> CollaborativeModel:
    """The loaded model with its tokenizer, on `device` in `dtype`. No speed switches here: those are
    `model.optimize_for(device)`, which `load_model` calls unless told not to."""
    tokenizer = None
    if needs_vocab(model.config):
        # a model's own vocabulary is not bert-base-uncased: no checksum warning for it
        tokenizer = WordPieceTokenizer.from_vocab_file(find_vocab(vocab), verify=not own_vocab)
    model.attach_tokenizer(tokenizer)
    model.to(device)
    return model.set_precision(dtype)


def save_pretrained(model: CollaborativeModel, directory: str | Path, storage_dtype: torch.dtype | None = None,
                    layout: str = "components") -> Path:
    """Write a model folder (see `collab.model_folder`): by default one folder per component with a
    model_index.json; `layout="flat"` writes the collab/v1 config.yaml + model.safetensors. A model
    with a tokenizer also gets vocab.txt. Tensors keep the model's dtype, or floating ones are stored
    as `storage_dtype` (e.g. float16 to halve the files; loading casts them back to float32)."""
    from collab.model_folder import LAYOUTS, save_components, save_flat

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if storage_dtype is not None:
        tensors = {k: v.to(storage_dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    cfg = model.config
    if model.tokenizer is not None:  # self-contained: the vocabulary travels with the weights
        model.tokenizer.save_vocab(directory / VOCAB_NAME)
        cfg = replace(cfg, vocab=VOCAB_NAME)
    (save_components if layout == "components" else save_flat)(model, cfg, directory, tensors)
    return directory


def load_pretrained(directory: str | Path, *, vocab: str | Path | None = None, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32,
                    components: Mapping[str, str | Path] | None = None) -> CollaborativeModel:
    """A model folder written by `save_pretrained`, in either layout. `components` swaps parts of a
    component-layout folder: {"collaborators/text": "path/to/another/collaborator", ...}."""
    from collab.model_folder import check_components, load_folder_config, read_component_tensors

    directory = Path(directory)
    cfg, folders = load_folder_config(directory, components)
    if folders is None:
        weights = read_state_dict(directory / WEIGHTS_NAME)
        source = str(directory / WEIGHTS_NAME)
    else:
        weights = read_component_tensors(folders)
        with torch.device("meta"):
            check_components(CollaborativeModel(cfg), weights, folders)
        source = str(directory)
    model = _materialise(cfg, weights, source)
    own = vocab is None and bool(cfg.vocab)
    if own:
        vocab = cfg.vocab if Path(cfg.vocab).is_absolute() else directory / cfg.vocab
    return _finish(model, vocab, device, dtype, own_vocab=own)
