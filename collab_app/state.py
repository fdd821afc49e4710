"""What the app holds between requests: loaded models (lazily, one per name) and their load state,
one first-come-first-served line per model, the Stop buttons' flags, the optional evaluator, the
device. Created once per page by `build_app`; no module-level mutable state."""
from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Iterator

import torch

from collab import kinds
from collab.model import CollaborativeModel
from collab.registry import MODELS, checkpoints_dir, load_model

from collab_app.errors import Cancelled

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
    _load_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _load_state: dict[str, str] = field(default_factory=dict, repr=False)
    lines: ModelLines = field(default_factory=lambda: ModelLines(), repr=False)
    stops: StopFlags = field(default_factory=lambda: StopFlags(), repr=False)
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
        with self._load_lock:  # two first requests must not load the same weights twice
            if name not in self.models:
                self._load_state[name] = "loading"
                try:
                    self.models[name] = load_model(name, device=self.device)
                except Exception as e:
                    self._load_state[name] = f"failed to load: {e}"
                    raise
                self._load_state[name] = "loaded"
            return self.models[name]

    def load_state(self, name: str | None = None) -> str:
        """"loaded", "loading", "not loaded yet" or "failed to load: ..." (what About says)."""
        return self._load_state.get(self.resolve(name), "not loaded yet")

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

    def turn(self, name: str | None = None, cancelled: Callable[[], bool] = lambda: False,
             waiting: Callable[[int], None] | None = None):
        """Hold one model while computing with it: one job per model at a time, in arrival order.
        `waiting(n)` hears how many jobs are ahead whenever that changes; a stopped job leaves the line."""
        return self.lines.turn(self.resolve(name), cancelled, waiting)

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
        for _, _, enc in m.inputs():
            widget = kinds.kind_of(enc).widget(enc)
            if widget.control == "checkboxes":
                return widget.choices
    return ()


def pick_device(requested: str = "auto") -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but no CUDA device is visible")
    return requested


class ModelLines:
    """A first-come-first-served line per model: the job at the head computes, the others wait and
    can say truthfully how many jobs are ahead of them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._lines: dict[str, list[int]] = defaultdict(list)
        self._tickets = itertools.count()

    def ahead(self, name: str) -> int:
        """Jobs holding or waiting for `name` now (what a new job would wait behind)."""
        with self._cond:
            return len(self._lines[name])

    @contextlib.contextmanager
    def turn(self, name: str, cancelled: Callable[[], bool], waiting: Callable[[int], None] | None) -> Iterator[None]:
        ticket = next(self._tickets)
        with self._cond:
            line = self._lines[name]
            line.append(ticket)
            told = None
            try:
                while line[0] != ticket:
                    ahead = line.index(ticket)
                    if waiting is not None and ahead != told:
                        waiting(ahead)
                        told = ahead
                    if cancelled():
                        raise Cancelled("stopped while waiting for the model")
                    self._cond.wait(timeout=0.2)
            except BaseException:
                line.remove(ticket)
                self._cond.notify_all()
                raise
        try:
            yield
        finally:
            with self._cond:
                line.remove(ticket)
                self._cond.notify_all()


class StopFlags:
    """The Stop buttons: a flag per running job, found by (page session, tab). Stopping is
    cooperative (the job ends at its next step and returns what it has), so the page's event ends
    normally and the next click runs at once. A Stop pressed after a click whose job has not
    started yet (it waits in the queue) stops that job as it starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[Hashable, set[threading.Event]] = defaultdict(set)
        self._clicked: dict[Hashable, float] = {}  # a click whose job has not started yet
        self._stopped: dict[Hashable, float] = {}

    def clicked(self, key: Hashable) -> None:
        with self._lock:
            self._clicked[key] = time.monotonic()

    @contextlib.contextmanager
    def job(self, key: Hashable) -> Iterator[threading.Event]:
        flag = threading.Event()
        with self._lock:
            click = self._clicked.pop(key, None)
            if click is not None and self._stopped.get(key, -1.0) > click:
                flag.set()  # stopped while it waited to start
            self._flags[key].add(flag)
        try:
            yield flag
        finally:
            with self._lock:
                self._flags[key].discard(flag)

    def stop(self, key: Hashable) -> int:
        """Set the flags of every job running or about to start under `key`; returns how many."""
        with self._lock:
            self._stopped[key] = time.monotonic()
            flags = list(self._flags.get(key, ()))
            waiting = int(key in self._clicked)
        for flag in flags:
            flag.set()
        return len(flags) + waiting
