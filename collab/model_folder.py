"""Hub-style model folders: one folder per component, as diffusers lays out a pipeline.

    model_index.json                 what the model is made of, and where each part lives
    vae/                             config.json + model.safetensors
    collaborators/<modality>/        a pre-trained uni-modal diffusion model (UNet)
    encoders/<modality>/             its condition encoder
    diffusers/<modality>/            its dynamic diffuser (absent for a collaborator used alone)
    vocab.txt                        the tokenizer vocabulary, when a text encoder reads one
    README.md                        the model card

Component paths in model_index.json are relative to the folder or absolute, so a separately trained
collaborator is reused by pointing its entry (or `components=` at load time) at its folder. The flat
layout of collab/v1 (config.yaml + model.safetensors) still loads; `python -m collab.model_folder
convert SRC DST` rewrites any loadable model in the layout asked for.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file

from collab import __version__
from collab.checkpoint import CheckpointError
from collab.config import ModelConfig, config_from_dict, config_to_dict, load_config, save_config
from collab.model import CollaborativeModel

INDEX_NAME = "model_index.json"
INDEX_FORMAT = "collab/v2"
COMPONENT_CONFIG = "config.json"
COMPONENT_WEIGHTS = "model.safetensors"
FLAT_CONFIG, FLAT_WEIGHTS, VOCAB_NAME = "config.yaml", "model.safetensors", "vocab.txt"
PARTS = ("collaborators", "encoders", "diffusers")  # module dicts of CollaborativeModel, one folder each
LAYOUTS = ("components", "flat")
_CLASSES = {"vae": "AutoencoderKL", "collaborators": "UNetModel", "diffusers": "UNetModel"}


class ModelFolderError(CheckpointError):
    """A model folder that cannot be read as asked, naming the file and what was expected."""


def folder_layout(directory: str | Path) -> str | None:
    """"components", "flat", or None when `directory` is not a model folder."""
    d = Path(directory)
    if (d / INDEX_NAME).is_file():
        return "components"
    if (d / FLAT_CONFIG).is_file():
        return "flat"
    return None


# ---------------------------------------------------------------- writing


def _write_component(folder: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMPONENT_CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    tmp = folder / (COMPONENT_WEIGHTS + ".tmp")
    save_file(tensors, tmp, metadata={"format": INDEX_FORMAT, "component": config["_class_name"]})
    tmp.replace(folder / COMPONENT_WEIGHTS)


def _split(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def save_components(model: CollaborativeModel, cfg: ModelConfig, directory: Path,
                    tensors: Mapping[str, torch.Tensor]) -> None:
    """Write `tensors` (the model's state_dict, prepared for storage) as one folder per component."""
    plain = config_to_dict(cfg)
    _write_component(directory / "vae", {"_class_name": _CLASSES["vae"], **plain["vae"]}, _split(tensors, "vae."))
    modalities = []
    for m, entry in zip(cfg.modalities, plain["modalities"]):
        index = {"name": m.name, "kind": m.kind, "leads_early": m.leads_early, "official_name": m.official_name}
        if m.strength != 1.0:  # a default strength other than "as learned" travels with the model
            index["strength"] = m.strength
        for part, field in zip(PARTS, ("collaborator", "encoder", "diffuser")):
            if entry[field] is None:
                index[field] = None
                continue
            module = getattr(model, part)[m.name]
            cfg = {"_class_name": _CLASSES.get(part, type(module).__name__), **entry[field]}  # encoders: with kind
            _write_component(directory / part / m.name, cfg, _split(tensors, f"{part}.{m.name}."))
            index[field] = f"{part}/{m.name}"
        modalities.append(index)
    top = {k: v for k, v in plain.items() if k not in ("format", "vae", "modalities")}
    index = {"_class_name": "CollaborativeModel", "format": INDEX_FORMAT, "collab_version": __version__,
             **top, "vae": "vae", "modalities": modalities}
    (directory / INDEX_NAME).write_text(json.dumps(index, indent=1) + "\n")
    for stale in (FLAT_CONFIG, FLAT_WEIGHTS):  # a flat model this folder held before: replaced
        (directory / stale).unlink(missing_ok=True)


def save_flat(model: CollaborativeModel, cfg: ModelConfig, directory: Path,
              tensors: Mapping[str, torch.Tensor]) -> None:
    """The collab/v1 layout: config.yaml + one model.safetensors."""
    tmp = directory / (FLAT_WEIGHTS + ".tmp")
    save_file(dict(tensors), tmp, metadata={"format": "collab/v1", "config": cfg.name})
    tmp.replace(directory / FLAT_WEIGHTS)
    save_config(cfg, directory / FLAT_CONFIG)
    if (directory / INDEX_NAME).exists():  # a component model this folder held before: replaced
        (directory / INDEX_NAME).unlink()
        for sub in ("vae", *PARTS):
            shutil.rmtree(directory / sub, ignore_errors=True)


# ---------------------------------------------------------------- reading


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _component_dir(directory: Path, ref: str, overrides: Mapping[str, str | Path]) -> Path:
    """Where a component lives: an override for its entry, else the index's path (relative to the
    model folder, or absolute)."""
    path = Path(overrides.get(ref, ref)).expanduser()
    path = path if path.is_absolute() else directory / path
    for name in (COMPONENT_CONFIG, COMPONENT_WEIGHTS):
        if not (path / name).is_file():
            raise ModelFolderError(f"component {ref!r}: {path / name} not found (a component folder holds "
                                   f"{COMPONENT_CONFIG} and {COMPONENT_WEIGHTS})")
    return path


def _component_config(folder: Path, expected_class: str | None) -> dict[str, Any]:
    cfg = _read_json(folder / COMPONENT_CONFIG)
    found = cfg.pop("_class_name", None)
    if expected_class is not None and found != expected_class:
        raise ModelFolderError(f"{folder / COMPONENT_CONFIG}: a {found} where the model needs a {expected_class}")
    return cfg


def _check_encoder_kind(cfg: dict[str, Any], modality: dict[str, Any], folder: Path) -> None:
    """The encoder's kind must serve its modality's kind; the modality's own kind (what folders
    written before encoder kinds existed hold) is left to the config reader's default."""
    from collab import kinds

    if cfg.get("kind", modality["kind"]) == modality["kind"]:
        cfg.pop("kind", None)
        return
    try:
        kinds.for_modality(modality["kind"], cfg["kind"])
    except ValueError as e:
        raise ModelFolderError(f"{folder / COMPONENT_CONFIG}: an encoder of another kind than modality "
                               f"{modality['name']!r} ({modality['kind']}): {e}") from None


def read_components(directory: str | Path, overrides: Mapping[str, str | Path] | None = None
                    ) -> tuple[dict[str, Any], dict[str, tuple[Path, str]]]:
    """model_index.json -> (the collab/v1 config dict, {state_dict prefix: (component folder, entry)})."""
    directory, overrides = Path(directory), dict(overrides or {})
    index = _read_json(directory / INDEX_NAME)
    if index.get("format") != INDEX_FORMAT:
        raise ModelFolderError(f"{directory / INDEX_NAME}: format {index.get('format')!r}, expected {INDEX_FORMAT!r}")
    known = {index["vae"], *(m[f] for m in index["modalities"] for f in ("collaborator", "encoder", "diffuser")
                             if m.get(f))}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ModelFolderError(f"no component {unknown} in {directory}; its components: {', '.join(sorted(known))}")
    vae_dir = _component_dir(directory, index["vae"], overrides)
    folders = {"vae.": (vae_dir, index["vae"])}
    modalities = []
    for m in index["modalities"]:
        entry = {k: m[k] for k in ("name", "kind", "leads_early", "layout", "official_name", "strength") if k in m}
        for part, field in zip(PARTS, ("collaborator", "encoder", "diffuser")):
            ref = m.get(field)
            if ref is None:
                entry[field] = None
                continue
            folder = _component_dir(directory, ref, overrides)
            cfg = _component_config(folder, _CLASSES.get(part))
            if part == "encoders":
                _check_encoder_kind(cfg, m, folder)
            entry[field] = cfg
            folders[f"{part}.{m['name']}."] = (folder, ref)
        modalities.append(entry)
    top = {k: v for k, v in index.items() if k not in ("_class_name", "format", "collab_version", "vae", "modalities")}
    config = {"format": "collab/v1", **top, "vae": _component_config(vae_dir, _CLASSES["vae"]),
              "modalities": modalities}
    return config, folders


def read_component_tensors(folders: Mapping[str, tuple[Path, str]]) -> dict[str, torch.Tensor]:
    """Every component's tensors under its state_dict prefix ("collaborators.text.", ...)."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, (folder, ref) in folders.items():
        try:
            part = load_file(folder / COMPONENT_WEIGHTS)
        except Exception as e:  # safetensors raises its own error types
            raise ModelFolderError(f"component {ref!r}: {folder / COMPONENT_WEIGHTS} is not a readable "
                                   f"safetensors file ({e})") from e
        tensors.update({prefix + k: v for k, v in part.items()})
    return tensors


def check_components(model: CollaborativeModel, tensors: Mapping[str, torch.Tensor],
                     folders: Mapping[str, tuple[Path, str]]) -> None:
    """Each component's keys and shapes against the module it must fill, naming the folder at fault."""
    from collab.checkpoint import compare_keys

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for prefix, (folder, ref) in folders.items():
        report = compare_keys(_split(expected, prefix), {k: tuple(v.shape) for k, v in _split(tensors, prefix).items()})
        if not report.ok:
            raise ModelFolderError(f"component {ref!r} ({folder}) does not fit this model:\n{report.describe()}")


def read_model_tensors(directory: str | Path) -> dict[str, torch.Tensor]:
    """A model folder's tensors, in either layout, under the model's state_dict keys."""
    directory = Path(directory)
    if folder_layout(directory) == "components":
        return read_component_tensors(read_components(directory)[1])
    from collab.checkpoint import read_state_dict

    return read_state_dict(directory / FLAT_WEIGHTS)


def check_consistency(cfg: ModelConfig, folders: Mapping[str, tuple[Path, str]]) -> None:
    """Components from different folders must fit together: latent channels, context widths."""
    from collab.encoders import build_encoder

    refs = {prefix: f"{ref!r} ({folder})" for prefix, (folder, ref) in folders.items()}
    if cfg.vae.embed_dim != cfg.latent_channels:
        raise ModelFolderError(f"component {refs['vae.']}: its latents have {cfg.vae.embed_dim} channels, the "
                               f"model {cfg.latent_channels}")
    for m in cfg.modalities:
        with torch.device("meta"):
            width = build_encoder(m.kind, m.encoder).context_dim
        for part, unet, out in (("collaborators", m.collaborator, cfg.latent_channels), ("diffusers", m.diffuser, 1)):
            if unet is None:
                continue
            ref = refs[f"{part}.{m.name}."]
            if unet.context_dim != width:
                raise ModelFolderError(f"component {ref} attends to a context {unet.context_dim} wide, but the "
                                       f"{m.name} encoder {refs[f'encoders.{m.name}.']} gives {width}")
            if (unet.in_channels, unet.out_channels) != (cfg.latent_channels, out):
                raise ModelFolderError(f"component {ref} maps {unet.in_channels} -> {unet.out_channels} channels; "
                                       f"this model needs {cfg.latent_channels} -> {out}")


def load_folder_config(directory: str | Path, overrides: Mapping[str, str | Path] | None = None):
    """(ModelConfig, {prefix: (folder, entry)} or None for a flat folder) of a model folder."""
    directory = Path(directory)
    layout = folder_layout(directory)
    if layout is None:
        raise FileNotFoundError(f"{directory} is not a collab model folder: it holds neither {INDEX_NAME} "
                                f"(component layout) nor {FLAT_CONFIG} + {FLAT_WEIGHTS} (flat layout)")
    if layout == "flat":
        if overrides:
            raise ModelFolderError(f"{directory} has the flat layout: its components cannot be swapped; convert "
                                   f"it first (python -m collab.model_folder convert {directory} DST)")
        if not (directory / FLAT_WEIGHTS).is_file():
            raise FileNotFoundError(f"{directory / FLAT_WEIGHTS} not found: a flat collab model folder holds "
                                    f"{FLAT_CONFIG} and {FLAT_WEIGHTS}")
        return load_config(directory / FLAT_CONFIG), None
    data, folders = read_components(directory, overrides)
    try:
        cfg = config_from_dict(data)
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFolderError(f"{directory / INDEX_NAME}: {e}") from e
    check_consistency(cfg, folders)
    return cfg, folders


# ---------------------------------------------------------------- the converter


def _stored_dtype(directory: Path) -> torch.dtype | None:
    """The floating dtype a model folder stores its tensors in (None: mixed or not a folder)."""
    if folder_layout(directory) is None:
        return None
    dtypes = {v.dtype for v in read_model_tensors(directory).values() if v.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def convert(source: str | Path, destination: str | Path, layout: str = "components",
            storage_dtype: torch.dtype | None = None, trusted: bool = False) -> Path:
    """Any model `load_model` reads (a model folder of either layout, a registry name, official
    .ckpt files) -> a model folder in `layout`. Tensors keep the source folder's storage dtype
    unless `storage_dtype` is given; a README.md model card beside the source is copied."""
    from collab.checkpoint import save_pretrained
    from collab.registry import load_model, resolve_source

    src = resolve_source(source)  # the source's model folder, None for .ckpt files
    dst = Path(destination)
    if src is not None and dst.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"convert writes a new folder; the destination {dst} is the source")
    model = load_model(source, trusted=trusted)
    if storage_dtype is None and src is not None:
        storage_dtype = _stored_dtype(src)
    save_pretrained(model, dst, storage_dtype=storage_dtype, layout=layout)
    if src is not None and (src / "README.md").is_file():
        shutil.copyfile(src / "README.md", dst / "README.md")
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m collab.model_folder", description="collab model folders")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="rewrite a model (folder, registry name, official .ckpt) as a model folder")
    c.add_argument("source")
    c.add_argument("destination")
    c.add_argument("--layout", choices=LAYOUTS, default="components")
    c.add_argument("--dtype", choices=("keep", "float32", "float16", "bfloat16"), default="keep",
                   help="storage dtype of floating tensors (keep: the source folder's)")
    c.add_argument("--trust-checkpoint", action="store_true", help="allow pickled code in a .ckpt you trust")
    args = ap.parse_args(argv)
    dtype = None if args.dtype == "keep" else getattr(torch, args.dtype)
    try:
        out = convert(args.source, args.destination, args.layout, dtype, args.trust_checkpoint)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({args.layout} layout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
