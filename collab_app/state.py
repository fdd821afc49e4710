"""What the app holds between requests: loaded models (lazily, one per name), one lock per model,
the optional evaluator, the device. Created once per page by `build_app`; no module-level mutable
state."""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from collab.model import CollaborativeModel
from collab.registry import MODELS, checkpoints_dir, load_model

README_HINT = ("Put the official files in `checkpoints/` (or set `COLLAB_CHECKPOINTS`); see the README "
               "section *Official checkpoints*. Nothing is ever downloaded.")


@dataclass
class AppState:
    default_model: str = "demo"  # a registry name or a model directory
    device: str = "cpu"
    evaluator_dir: Path | None = None
    models: dict[str, CollaborativeModel] = field(default_factory=dict)
    evaluator: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _busy: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _evaluator_loaded: bool = False
    _files: Path | None = None
    _cleaned: float = 0.0
    files_max_age_s: float = 3600.0  # output files older than this are deleted while the app runs

    def choices(self) -> list[str]:
        """Model names the selector offers: the default first, then every available registry set."""
        names = [self.default_model]
        names += [n for n, e in MODELS.items() if n != self.default_model and e.available()]
        return names

    def resolve(self, name: str | None) -> str:
        name = name or self.default_model
        if name not in self.choices():
            raise ValueError(f"model {name!r} is not available here; choose one of {', '.join(self.choices())}")
        return name

    def model(self, name: str | None = None) -> CollaborativeModel:
        name = self.resolve(name)
        with self._lock:  # two first requests must not load the same weights twice
            if name not in self.models:
                self.models[name] = load_model(name, device=self.device)
            return self.models[name]

    def config(self, name: str | None = None):
        """A selectable model's config without loading its weights (None for official .ckpt sets,
        whose configs name no attribute modality)."""
        from collab.model_folder import folder_layout, load_folder_config

        name = self.resolve(name)
        if name in self.models:
            return self.models[name].config
        d = Path(name) if Path(name).is_dir() else checkpoints_dir() / name
        return load_folder_config(d)[0] if folder_layout(d) else None

    def attribute_names(self) -> tuple[str, ...]:
        """Attribute names read by any selectable model (from configs, without loading weights):
        what the page's attribute picker offers."""
        names: dict[str, None] = {}
        for choice in self.choices():
            cfg = self.config(choice)
            if cfg is not None:
                names |= dict.fromkeys(attribute_names(cfg))
        return tuple(names)

    def busy(self, name: str | None = None) -> threading.Lock:
        """The lock a job holds while it computes with one model: one job per model at a time."""
        name = self.resolve(name)
        with self._lock:
            return self._busy.setdefault(name, threading.Lock())

    def files_dir(self) -> Path:
        """Where the page's output images are written (once each, named by content)."""
        with self._lock:
            if self._files is None:
                self._files = Path(tempfile.mkdtemp(prefix="collab_app_"))
            now = time.time()
            if now - self._cleaned > min(600.0, self.files_max_age_s):
                self._cleaned = now
                _delete_older(self._files, now - self.files_max_age_s)
            return self._files

    def evaluator_path(self) -> Path:
        return Path(self.evaluator_dir or checkpoints_dir() / "evaluator")

    def has_evaluator(self) -> bool:
        """Whether evaluator weights are installed (without loading them)."""
        return (self.evaluator_path() / "evaluator.yaml").exists()

    def get_evaluator(self):
        """The face parser + attribute classifier when its weights exist, else None."""
        with self._lock:
            if not self._evaluator_loaded:
                self._evaluator_loaded = True
                if self.has_evaluator():
                    from collab.evaluator import Evaluator

                    self.evaluator = Evaluator.load(self.evaluator_path())
            return self.evaluator

    def warm_up(self) -> None:
        """Load the default model and the evaluator (the app calls this in a background thread)."""
        model = self.model()
        for encoder in model.encoders.values():  # frozen pre-trained text backbones load on first use: now
            if hasattr(encoder, "backbone"):
                encoder.backbone()
        self.get_evaluator()

    def models_markdown(self) -> str:
        rows = ["| model | status |", "|---|---|"]
        if self.default_model not in MODELS:
            rows.append(f"| `{self.default_model}` | selected at launch |")
        for name, entry in MODELS.items():
            if entry.available():
                status = "available"
            else:
                status = "missing: " + ", ".join(f"`{f}`" for f in entry.missing())
            rows.append(f"| `{name}` — {entry.description} | {status} |")
        return "\n".join(rows) + "\n\n" + README_HINT


def _delete_older(folder: Path, before: float) -> None:
    """Delete the files and sub-folders of `folder` last written before `before` (a time.time())."""
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < before:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        except OSError:  # gone already, or being written
            pass


def attribute_names(cfg) -> tuple[str, ...]:
    """The names read by a config's attribute modality, or by the attribute part of a joint one."""
    for m in cfg.modalities:
        for _, kind, enc in m.inputs():
            if kind == "attributes":
                return tuple(enc.names)
    return ()


def pick_device(requested: str = "auto") -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but no CUDA device is visible")
    return requested
