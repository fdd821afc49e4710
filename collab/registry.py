"""Where model sets live, which are present, and one `load_model` for all of them.

Known sets: the embedded demo (`checkpoints/demo/`, trained by this project), the jointly trained
baseline beside it (`checkpoints/joint/`), and the official 256/512 releases (files the user places
in `checkpoints/`; never downloaded). The checkpoints folder is `COLLAB_CHECKPOINTS` when set, else
the source checkout's `checkpoints/`, else the copy installed with the wheel (package
`collab_checkpoints`), so `load_model("demo")` works from any folder after `pip install`. A Hugging
Face Hub id ("user/repo") is read from the local Hub cache, and downloaded only when missing there.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from collab.checkpoint import load_official, load_pretrained
from collab.model import CollaborativeModel
from collab.model_folder import folder_layout

DEFAULT_MODEL = "demo"
INSTALLED_PACKAGE = "collab_checkpoints"  # the wheel's copy of checkpoints/ (see pyproject.toml)


def checkpoints_dir() -> Path:
    """$COLLAB_CHECKPOINTS, else the checkout's checkpoints/, else the copy installed with the wheel."""
    env = os.environ.get("COLLAB_CHECKPOINTS")
    if env:
        return Path(env)
    source = Path(__file__).resolve().parents[1] / "checkpoints"
    if source.is_dir():
        return source
    spec = importlib.util.find_spec(INSTALLED_PACKAGE)  # found without importing anything
    for location in (spec.submodule_search_locations or []) if spec else []:
        return Path(location)
    return source


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    files: tuple[str, ...]  # relative to checkpoints_dir(); a directory for our own format
    alternatives: tuple[tuple[str, ...], ...] = ()  # other file sets that also work (fewer features)

    def present_files(self, root: Path | None = None) -> tuple[str, ...] | None:
        root = root or checkpoints_dir()
        for files in (self.files, *self.alternatives):
            if all((root / f).exists() for f in files):
                return files
        return None

    def available(self, root: Path | None = None) -> bool:
        return self.present_files(root) is not None

    def missing(self, root: Path | None = None) -> list[str]:
        root = root or checkpoints_dir()
        return [f for f in self.files if not (root / f).exists()]


MODELS = {
    "demo": ModelEntry("demo", "embedded face-world demo (128x128, trained on CPU by this project)", ("demo",)),
    "joint": ModelEntry("joint", "baseline: one LDM trained on attributes + mask at once (face world, 128x128)",
                        ("joint",)),
    **{f"official_{r}": ModelEntry(
        f"official_{r}", f"official Collaborative Diffusion {r}x{r} (CelebA-HQ)",
        (f"{r}_codiff_mask_text.ckpt",), alternatives=((f"{r}_text.ckpt", f"{r}_mask.ckpt"), (f"{r}_text.ckpt",),
                                                        (f"{r}_mask.ckpt",)))
       for r in (256, 512)},
}


def resolve_source(source: str | Path) -> Path | None:
    """The model folder `source` names (a folder, an installed registry model kept as a folder, a Hub
    id's snapshot), or None when it names official checkpoint files."""
    path = Path(source)
    if folder_layout(path) is not None:
        return path
    entry = MODELS.get(str(source))
    if entry is not None:
        files = entry.present_files()
        if files is not None and folder_layout(checkpoints_dir() / files[0]) is not None:
            return checkpoints_dir() / files[0]
        return None
    from collab.hub import is_hub_id, snapshot

    if isinstance(source, str) and is_hub_id(source):
        return snapshot(source)
    return None


def load_model(source: str | Path = DEFAULT_MODEL, *, ckpt: list[str | Path] | None = None,
               config: str | Path | None = None, vocab: str | Path | None = None, trusted: bool = False,
               device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               components: Mapping[str, str | Path] | None = None, optimize: bool = True) -> CollaborativeModel:
    """A registry name ("demo", "official_256", ...), a collab model folder (either layout), a Hugging
    Face Hub id of one, or official .ckpt files. `components` swaps parts of a component-layout
    folder: {"collaborators/text": "path/to/another/collaborator"}. With `optimize` (the default) the
    model's speed switches for `device` are turned on (`CollaborativeModel.optimize_for`); they change
    how it computes, not what (results equal to float rounding). Same as `CollaborativeModel.from_pretrained`."""
    model = _load(source, ckpt=ckpt, config=config, vocab=vocab, trusted=trusted, device=device, dtype=dtype,
                  components=components)
    return model.optimize_for(device) if optimize else model


def _load(source: str | Path, *, ckpt: list[str | Path] | None, config: str | Path | None, vocab: str | Path | None,
          trusted: bool, device: str | torch.device, dtype: torch.dtype,
          components: Mapping[str, str | Path] | None) -> CollaborativeModel:
    kw = dict(vocab=vocab, device=device, dtype=dtype)
    if ckpt:
        return load_official(ckpt, config, trusted=trusted, **kw)
    path = Path(source)
    if path.suffix in (".ckpt", ".pt", ".pth", ".safetensors") and path.is_file():
        return load_official([path], config, trusted=trusted, **kw)
    if path.is_dir() and folder_layout(path) is None:
        raise FileNotFoundError(f"{path} is not a collab model folder: it holds neither model_index.json "
                                "(component layout) nor config.yaml + model.safetensors (flat layout)")
    if str(source) not in MODELS:
        folder = resolve_source(source)
        if folder is None:
            raise ValueError(f"unknown model {source!r}: give one of {', '.join(MODELS)}, a collab model folder, "
                             "a Hugging Face Hub id (user/repo) of one, or official .ckpt files")
        return load_pretrained(folder, components=components, **kw)
    entry = MODELS[str(source)]
    root = checkpoints_dir()
    files = entry.present_files(root)
    if files is None:
        raise FileNotFoundError(f"model {entry.name} is not installed: put {', '.join(entry.files)} in {root} "
                                "(see README, 'Official checkpoints')")
    if (root / files[0]).is_dir():  # our own format (demo, joint)
        return load_pretrained(root / files[0], components=components, **kw)
    return load_official([root / f for f in files], config or entry.name, trusted=trusted, **kw)
