"""Model configuration: plain dataclasses, read from YAML only here, at the edge.

Two YAML dialects are read:
- the project's own (`format: collab/v1`, see `collab/configs/*.yaml`), and
- the official release's (`model: target: ldm....` with nested `*_config` sections), through one
  explicit table of the official class names we understand (no dynamic imports of string targets).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collab.encoders import (ENCODER_KINDS, EncoderPart, JointEncoderConfig, MaskEncoderConfig, TextEncoderConfig,
                             encoder_config_class)
from collab.unet import UNetConfig
from collab.vae import VAEConfig

FORMAT = "collab/v1"
CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class ModalityConfig:
    name: str  # our name: "mask", "text", ...
    kind: str  # condition kind, see collab.encoders.ENCODER_KINDS: "mask" | "text" | "attributes" | ...
    collaborator: UNetConfig
    encoder: Any  # the config class of ENCODER_KINDS[kind]
    diffuser: UNetConfig | None = None
    layout: bool = False  # decayed and boosted by the official rule (the mask branch)
    official_name: str | None = None  # branch name in official checkpoints: "seg_mask", "text"

    def inputs(self) -> tuple[tuple[str, str, Any], ...]:
        """(name, kind, encoder config) of each raw condition this modality reads: itself, or each
        part of a joint encoder."""
        if self.kind == "joint":
            return tuple((p.name, p.kind, p.encoder) for p in self.encoder.parts)
        return ((self.name, self.kind, self.encoder),)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    vae: VAEConfig
    modalities: tuple[ModalityConfig, ...]
    scale_factor: float
    latent_size: int
    latent_channels: int = 3
    timesteps: int = 1000
    linear_start: float = 0.0015
    linear_end: float = 0.0195
    default_rule: str = "paper"
    vocab: str | None = None  # tokenizer vocabulary, relative to the config file or absolute
    notes: str = ""

    @property
    def image_size(self) -> int:
        return self.latent_size * self.vae.downsample_factor

    def modality(self, name: str) -> ModalityConfig:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(f"no modality {name!r}; this model has {', '.join(self.names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)


# ---------------------------------------------------------------- dict <-> dataclass


def _build(cls: type, data: dict[str, Any]) -> Any:
    """Dataclass from a dict, lists -> tuples, unknown keys reported by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}; known: {sorted(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _encoder_config(kind: str, data: dict[str, Any]) -> Any:
    if kind not in ENCODER_KINDS:
        raise ValueError(f"unknown modality kind {kind!r}; known: {sorted(ENCODER_KINDS)}")
    if kind == "joint":  # nested: each part names its own kind and encoder fields
        parts = []
        for p in data.get("parts", ()):
            p = dict(p)
            p["encoder"] = _encoder_config(p["kind"], p["encoder"])
            parts.append(_build(EncoderPart, p))
        return JointEncoderConfig(parts=tuple(parts))
    return _build(encoder_config_class(kind, data), data)


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return {"format": FORMAT, **plain(cfg)}


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    data = dict(data)
    fmt = data.pop("format", None)
    if fmt != FORMAT:
        raise ValueError(f"not a collab config (format {fmt!r}, expected {FORMAT!r})")
    modalities = []
    for m in data.pop("modalities"):
        m = dict(m)
        kind = m["kind"]
        m["collaborator"] = _build(UNetConfig, m["collaborator"])
        m["encoder"] = _encoder_config(kind, m["encoder"])
        m["diffuser"] = _build(UNetConfig, m["diffuser"]) if m.get("diffuser") else None
        modalities.append(_build(ModalityConfig, m))
    data["vae"] = _build(VAEConfig, data["vae"])
    data["modalities"] = modalities
    return _build(ModelConfig, data)


def save_config(cfg: ModelConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def load_config(path_or_name: str | Path) -> ModelConfig:
    """A collab/v1 YAML file, or the name of a shipped config ("official_256", "official_512", ...)."""
    path = Path(path_or_name)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{path_or_name}.yaml"
    if not path.exists():
        shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no config at {path_or_name}; shipped configs: {shipped}")
    data = yaml.safe_load(path.read_text())
    if isinstance(data, dict) and "model" in data and "format" not in data:
        return load_official_config(path)
    return config_from_dict(data)


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


# ---------------------------------------------------------------- official YAML dialect

_UNET = "ldm.modules.diffusionmodules.openaimodel.UNetModel"
_VAE = "ldm.models.autoencoder.AutoencoderKL"
_LDM = "ldm.models.diffusion.ddpm.LatentDiffusion"
_COMPOSE = "ldm.models.diffusion.ddpm_compose.LatentDiffusionCompose"
# official condition-encoder class -> (our modality kind, our name, official branch name)
_ENCODERS = {
    "ldm.modules.encoders.modules.BERTEmbedder": ("text", "text", "text"),
    "ldm.modules.encoders.modules.SegMaskEncoder": ("mask", "mask", "seg_mask"),
}
_UNET_FIELDS = {f.name for f in dataclasses.fields(UNetConfig)}
_UNET_IGNORED = {"use_checkpoint", "use_spatial_transformer", "use_fp16", "dims", "dropout", "conv_resample",
                 "num_heads_upsample", "resblock_updown", "use_new_attention_order", "n_embed"}


def _expect(section: dict[str, Any], target: str, where: str) -> dict[str, Any]:
    if section.get("target") != target:
        raise ValueError(f"{where}: expected target {target}, found {section.get('target')}")
    return section.get("params") or {}


def unet_from_official(section: dict[str, Any], where: str = "unet_config") -> UNetConfig:
    params = _expect(section, _UNET, where)
    if params.get("use_spatial_transformer") is False:
        raise ValueError(f"{where}: only spatial-transformer UNets are supported (use_spatial_transformer: true)")
    unknown = sorted(set(params) - _UNET_FIELDS - _UNET_IGNORED)
    if unknown:
        raise ValueError(f"{where}: unsupported UNet options {unknown}")
    kept = {k: v for k, v in params.items() if k in _UNET_FIELDS}
    return _build(UNetConfig, kept)


def vae_from_official(section: dict[str, Any]) -> VAEConfig:
    params = _expect(section, _VAE, "first_stage_config")
    dd = dict(params["ddconfig"])
    dd.pop("dropout", None)
    return _build(VAEConfig, {**dd, "embed_dim": params["embed_dim"]})


def _encoder_from_official(section: dict[str, Any]) -> tuple[str, str, str, TextEncoderConfig | MaskEncoderConfig]:
    target = section.get("target")
    if target not in _ENCODERS:
        raise ValueError(f"cond_stage_config: unsupported encoder {target}; supported: {sorted(_ENCODERS)}")
    kind, name, official = _ENCODERS[target]
    p = section.get("params") or {}
    if kind == "text":
        enc = TextEncoderConfig(n_embed=p["n_embed"], n_layer=p["n_layer"],
                                vocab_size=p.get("vocab_size", 30522), max_seq_len=p.get("max_seq_len", 77))
    else:
        enc = MaskEncoderConfig(context_dim=p["context_dim"], mask_embed_dim=p.get("mask_embed_dim", 1024))
    return kind, name, official, enc


@dataclass(frozen=True)
class OfficialLDM:
    """One official uni-modal LatentDiffusion config, parsed."""

    unet: UNetConfig
    vae: VAEConfig
    kind: str
    name: str
    official_name: str
    encoder: TextEncoderConfig | MaskEncoderConfig
    params: dict[str, Any] = field(default_factory=dict)


def _ldm_from_official(params: dict[str, Any]) -> OfficialLDM:
    kind, name, official, enc = _encoder_from_official(params["cond_stage_config"])
    return OfficialLDM(unet_from_official(params["unet_config"]), vae_from_official(params["first_stage_config"]),
                       kind, name, official, enc, params)


def _resolve(ref: str, base: Path) -> Path:
    """Official configs name sibling configs relative to the repo root ("configs/256_mask.yaml");
    try next to the referring file, then as given, then by file name next to it."""
    for candidate in (base / ref, Path(ref), base / Path(ref).name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"config {ref!r} referenced from {base} not found (tried next to it and as given)")


def load_official_config(path: str | Path) -> ModelConfig:
    """An official `configs/*.yaml` (compose or uni-modal) -> ModelConfig."""
    path = Path(path)
    model = yaml.safe_load(path.read_text())["model"]
    params = model.get("params") or {}
    common = dict(scale_factor=float(params.get("scale_factor", 1.0)), latent_size=int(params["image_size"]),
                  latent_channels=int(params.get("channels", 3)), timesteps=int(params.get("timesteps", 1000)),
                  linear_start=float(params.get("linear_start", 0.0015)),
                  linear_end=float(params.get("linear_end", 0.0195)))
    if model.get("target") == _LDM:
        ldm = _ldm_from_official(params)
        mod = ModalityConfig(ldm.name, ldm.kind, ldm.unet, ldm.encoder, None, ldm.kind == "mask", ldm.official_name)
        return ModelConfig(name=path.stem, vae=ldm.vae, modalities=(mod,), default_rule="paper", **common)
    if model.get("target") != _COMPOSE:
        raise ValueError(f"{path}: unsupported model target {model.get('target')}; expected {_LDM} or {_COMPOSE}")
    compose = _expect(params["compose_unet_config"], "ldm.models.diffusion.compose_modules.ComposeUNet",
                      "compose_unet_config")
    if compose.get("confidence_input", "unet_output") != "x_t":
        raise ValueError("compose_unet_config: only confidence_input: x_t is supported (the released setting)")
    diffuser = unet_from_official(compose["confidence_map_predictor_config"], "confidence_map_predictor_config")
    modalities, vae = [], None
    # The official compose model has fixed branch slots; mask first, then text (its softmax order).
    for key in ("seg_mask_ldm_config_path", "text_ldm_config_path", "sketch_ldm_config_path"):
        if not params.get(key):
            continue
        sub = yaml.safe_load(_resolve(params[key], path.parent).read_text())["model"]
        ldm = _ldm_from_official(_expect(sub, _LDM, key))
        vae = vae or ldm.vae
        modalities.append(ModalityConfig(ldm.name, ldm.kind, ldm.unet, ldm.encoder, diffuser,
                                         ldm.kind == "mask", ldm.official_name))
    return ModelConfig(name=path.stem, vae=vae, modalities=tuple(modalities), default_rule="official", **common)
