"""Where model sets live, which are present, and one `load_model` for all of them.

Known sets: the embedded demo (`checkpoints/demo/`, trained by this project, always present in a
checkout), the jointly trained baseline beside it (`checkpoints/joint/`), and the official 256/512 releases (files the user places in `checkpoints/`; never
downloaded). `COLLAB_CHECKPOINTS` points elsewhere.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from collab.checkpoint import CONFIG_NAME, load_official, load_pretrained
from collab.model import CollaborativeModel

DEFAULT_MODEL = "demo"


def checkpoints_dir() -> Path:
    env = os.environ.get("COLLAB_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "checkpoints"


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


def load_model(source: str | Path = DEFAULT_MODEL, *, ckpt: list[str | Path] | None = None,
               config: str | Path | None = None, vocab: str | Path | None = None, trusted: bool = False,
               device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> CollaborativeModel:
    """A registry name ("demo", "official_256", ...), a collab model directory, or official .ckpt files."""
    kw = dict(vocab=vocab, device=device, dtype=dtype)
    if ckpt:
        return load_official(ckpt, config, trusted=trusted, **kw)
    path = Path(source)
    if path.is_dir() and (path / CONFIG_NAME).exists():
        return load_pretrained(path, **kw)
    if path.suffix in (".ckpt", ".pt", ".pth", ".safetensors") and path.exists():
        return load_official([path], config, trusted=trusted, **kw)
    entry = MODELS.get(str(source))
    if entry is None:
        raise ValueError(f"unknown model {source!r}: give one of {', '.join(MODELS)}, a collab model directory, "
                         "or official .ckpt files")
    root = checkpoints_dir()
    files = entry.present_files(root)
    if files is None:
        raise FileNotFoundError(f"model {entry.name} is not installed: put {', '.join(entry.files)} in {root} "
                                "(see README, 'Official checkpoints')")
    if (root / files[0]).is_dir():  # our own format (demo, joint)
        return load_pretrained(root / files[0], **kw)
    return load_official([root / f for f in files], config or entry.name, trusted=trusted, **kw)
