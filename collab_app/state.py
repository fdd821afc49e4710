"""What the app holds between requests: loaded models (lazily, one per name), the optional
evaluator, the device. Created once by `build_app`; no module-level mutable state."""
from __future__ import annotations

import threading
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
    _evaluator_loaded: bool = False

    def choices(self) -> list[str]:
        """Model names the selector offers: the default first, then every available registry set."""
        names = [self.default_model]
        names += [n for n, e in MODELS.items() if n != self.default_model and e.available()]
        return names

    def model(self, name: str | None = None) -> CollaborativeModel:
        name = name or self.default_model
        if name not in self.choices():
            raise ValueError(f"model {name!r} is not available here; choose one of {', '.join(self.choices())}")
        with self._lock:  # two first requests must not load the same weights twice
            if name not in self.models:
                self.models[name] = load_model(name, device=self.device)
            return self.models[name]

    def get_evaluator(self):
        """The face parser + attribute classifier when its weights exist, else None."""
        with self._lock:
            if not self._evaluator_loaded:
                self._evaluator_loaded = True
                d = self.evaluator_dir or checkpoints_dir() / "evaluator"
                if (Path(d) / "evaluator.yaml").exists():
                    from collab.evaluator import Evaluator

                    self.evaluator = Evaluator.load(d)
            return self.evaluator

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


def pick_device(requested: str = "auto") -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but no CUDA device is visible")
    return requested
