"""Model configuration: plain dataclasses, read from YAML only here, at the edge.

Two YAML dialects are read:
- the project's own (`format: collab/v1`, see `collab/configs/*.yaml`), and
- the official release's (`model: target: ldm....` with nested `*_config` sections), through one
  explicit table of the official class names we understand (no dynamic imports of string targets).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collab import kinds, validate
from collab.encoders import MaskEncoderConfig, TextEncoderConfig
from collab.unet import UNetConfig
from collab.vae import VAEConfig

FORMAT = "collab/v1"
CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class ModalityConfig:
    name: str  # our name: "mask", "text", ...
    kind: str  # condition kind (collab.kinds): "mask" | "text" | "attributes" | ...
    collaborator: UNetConfig
    encoder: Any  # the config of an encoder kind serving `kind` (collab.kinds.serving)
    diffuser: UNetConfig | None = None
    # Leads early: under the official combination rule its weight is decayed with t (strong in the
    # first, noisy steps) and boosted (the mask branch). YAML key `leads_early`; older files say `layout`.
    leads_early: bool = False
    official_name: str | None = None  # branch name in official checkpoints: "seg_mask", "text"
    # The model's default strength of this modality's learned weight in collaborative sampling (1 = as
    # learned; `generate(strength=)` overrides it). Chosen on validation conditions, never the evaluation's.
    strength: float = 1.0

    @property
    def layout(self) -> bool:
        """Old name of `leads_early`."""
        return self.leads_early

    def inputs(self) -> tuple[tuple[str, str, Any], ...]:
        """(name, kind, encoder config) of each raw condition this modality reads: itself, or each
        part of a joint encoder."""
        return kinds.kind_of(self.encoder).parts(self.encoder) or ((self.name, self.kind, self.encoder),)


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
    """Dataclass from a dict, lists -> tuples, unknown and missing keys reported by name."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping of fields, got {type(data).__name__}")
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    unknown = sorted(map(str, set(data) - names))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}; known: {sorted(names)}")
    missing = [f.name for f in fields if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{cls.__name__}: missing fields {missing}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# ---------------------------------------------------------------- field types and bounds


def check_config(cfg: ModelConfig) -> ModelConfig:
    """Every field of the config tree of its declared type (ints also from integral floats, reals
    finite), plus the bounds of the top-level numbers. Errors name the field's path."""
    cfg = _typed(cfg, "config")
    validate.real("config.scale_factor", cfg.scale_factor, 1e-8, 1e8)
    validate.integer("config.latent_size", cfg.latent_size, 1, 4096)
    validate.integer("config.latent_channels", cfg.latent_channels, 1, 1024)
    validate.integer("config.timesteps", cfg.timesteps, 1, 100_000)
    validate.real("config.linear_start", cfg.linear_start, 1e-8, 1.0)
    validate.real("config.linear_end", cfg.linear_end, cfg.linear_start, 1.0 - 1e-8)
    validate.choice("config.default_rule", cfg.default_rule, ("paper", "official"))
    for m in cfg.modalities:
        if validate.real(f"config.modalities.{m.name}.strength", m.strength, 0.0, 16.0) <= 0:
            raise ValueError(f"config.modalities.{m.name}.strength must be > 0 (a default cannot switch a modality off)")
    names = cfg.names
    if not names or len(set(names)) != len(names):
        raise ValueError(f"config.modalities must be one or more modalities with distinct names, got {list(names)}")
    return cfg


def _typed(value: Any, where: str, hint: Any = Any) -> Any:
    """`value` checked against the type hint (recursing into dataclasses), in canonical form."""
    if hint is Any:
        return _typed_dataclass(value, where) if dataclasses.is_dataclass(value) else value
    arms = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    if arms:
        errors = []
        for arm in arms:
            try:
                return _typed(value, where, arm)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise ValueError(f"{where} has the wrong type: " + "; or ".join(errors))
    if hint is type(None):
        if value is not None:
            raise ValueError(f"{where} must be null, got {validate.show(value)}")
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be true or false, got {validate.show(value)}")
        return value
    if hint is int:
        return validate.integer(where, value)
    if hint is float:
        return validate.real(where, value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string, got {validate.show(value)}")
        return value
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, tuple):
            raise TypeError(f"{where} must be a list, got {validate.show(value)}")
        item = typing.get_args(hint)[0]
        return tuple(_typed(v, f"{where}[{i}]", item) for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise TypeError(f"{where} must be a {hint.__name__} section, got {validate.show(value)}")
        return _typed_dataclass(value, where)
    return value


def _typed_dataclass(obj: Any, where: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    return dataclasses.replace(obj, **{f.name: _typed(getattr(obj, f.name), f"{where}.{f.name}", hints[f.name])
                                       for f in dataclasses.fields(obj) if f.init})


# collab/v1 files written before encoders named their kind: (modality kind, a field only that
# encoder has) -> its kind. Read-only migration; files written now carry `kind:` in every encoder.
_V1_ENCODER_KINDS = {("text", "backbone"): "pretrained_text"}


def _encoder_config(kind: str, data: dict[str, Any]) -> Any:
    """An encoder section -> its config: the class of the kind it names (`kind:`), else of the
    modality's own kind; a kind with parts (joint) reads each part's section the same way."""
    if not isinstance(data, dict):
        raise ValueError(f"an encoder section is a mapping of fields, got {type(data).__name__}")
    data = dict(data)
    if "kind" in data and not isinstance(data["kind"], str):
        raise ValueError(f"the encoder field 'kind' must name an encoder kind (a string), got {data['kind']!r}")
    named = data.pop("kind", None)
    if named is None:
        named = next((v for (k, f), v in _V1_ENCODER_KINDS.items() if k == kind and f in data), None)
    entry = kinds.for_modality(kind, named)
    if entry.from_dict is not None:
        return entry.from_dict(data, lambda part_kind, part: _encoder_config(part_kind, part), _build)
    return _build(entry.config, data)


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    out = {"format": FORMAT, **plain(cfg)}
    for m, entry in zip(cfg.modalities, out["modalities"]):
        entry["encoder"] = _named_encoder(m.encoder, entry["encoder"])
    return out


def _named_encoder(encoder: Any, section: dict[str, Any]) -> dict[str, Any]:
    """An encoder section with its kind first (and its parts' kinds, for a joint encoder)."""
    entry = kinds.kind_of(encoder)
    for (_, _, part), part_section in zip(entry.parts(encoder), section.get("parts", ())):
        part_section["encoder"] = _named_encoder(part, part_section["encoder"])
    return {"kind": entry.name, **section}


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    if not isinstance(data, dict):
        raise ValueError(f"a collab config is a mapping of fields, got {type(data).__name__}")
    data = dict(data)
    fmt = data.pop("format", None)
    if fmt != FORMAT:
        raise ValueError(f"not a collab config (format {fmt!r}, expected {FORMAT!r})")
    for key in ("modalities", "vae"):
        if key not in data:
            raise ValueError(f"config: missing field {key!r}")
    if not isinstance(data["modalities"], list) or not all(isinstance(m, dict) for m in data["modalities"]):
        raise ValueError("config.modalities must be a list of modality sections")
    modalities = []
    for m in data.pop("modalities"):
        m = dict(m)
        for key in ("kind", "collaborator", "encoder"):
            if key not in m:
                raise ValueError(f"config: modality {m.get('name', '?')!r} has no field {key!r}")
        if "layout" in m:  # the flag's name before collab 0.x: still read
            if "leads_early" in m:
                raise ValueError(f"config: modality {m.get('name', '?')!r} gives both 'leads_early' and its old "
                                 "name 'layout'; keep 'leads_early'")
            m["leads_early"] = m.pop("layout")
        kind = m["kind"]
        m["collaborator"] = _build(UNetConfig, m["collaborator"])
        m["encoder"] = _encoder_config(kind, m["encoder"])
        m["diffuser"] = _build(UNetConfig, m["diffuser"]) if m.get("diffuser") else None
        modalities.append(_build(ModalityConfig, m))
    data["vae"] = _build(VAEConfig, data["vae"])
    data["modalities"] = modalities
    return check_config(_build(ModelConfig, data))


def save_config(cfg: ModelConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def load_config(path_or_name: str | Path) -> ModelConfig:
    """A collab/v1 YAML file, or the name of a shipped config ("official_256", "official_512", ...)."""
    if not isinstance(path_or_name, (str, Path)):
        raise TypeError(f"config must be a path or a shipped config name, got {validate.show(path_or_name)}")
    path = Path(path_or_name)
    if not path.suffix and not _exists(path):
        path = CONFIG_DIR / f"{path_or_name}.yaml"
    if not _exists(path):
        shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no config at {path_or_name}; shipped configs: {shipped}")
    data = read_yaml(path)
    if isinstance(data, dict) and "model" in data and "format" not in data:
        return load_official_config(path)
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long, a NUL byte: no such config either
        return False


def read_yaml(path: Path) -> Any:
    """A YAML file's data; a syntax error becomes a ValueError with the line it is on."""
    path = validate.file_path("config", path, "config file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ValueError(f"{path}: not valid YAML{line} ({getattr(e, 'problem', None) or e})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e})") from None


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
    try:
        return check_config(_official_config(path))
    except KeyError as e:
        raise ValueError(f"{path}: missing field {e} in an official config") from None
    except (TypeError, AttributeError) as e:  # a section that is not a mapping, a number that is a string...
        raise ValueError(f"{path}: malformed official config ({e})") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _official_config(path: Path) -> ModelConfig:
    model = read_yaml(path)["model"]
    params = model.get("params") or {}
    real, integer = validate.real, validate.integer
    common = dict(scale_factor=real("model.params.scale_factor", params.get("scale_factor", 1.0)),
                  latent_size=integer("model.params.image_size", params["image_size"]),
                  latent_channels=integer("model.params.channels", params.get("channels", 3)),
                  timesteps=integer("model.params.timesteps", params.get("timesteps", 1000)),
                  linear_start=real("model.params.linear_start", params.get("linear_start", 0.0015)),
                  linear_end=real("model.params.linear_end", params.get("linear_end", 0.0195)))
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
        sub = read_yaml(_resolve(params[key], path.parent))["model"]
        ldm = _ldm_from_official(_expect(sub, _LDM, key))
        vae = vae or ldm.vae
        modalities.append(ModalityConfig(ldm.name, ldm.kind, ldm.unet, ldm.encoder, diffuser,
                                         ldm.kind == "mask", ldm.official_name))
    return ModelConfig(name=path.stem, vae=vae, modalities=tuple(modalities), default_rule="official", **common)
