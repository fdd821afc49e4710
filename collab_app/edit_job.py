"""The Edit tab's job: a face, target conditions and alpha -> `collab.editing` -> the edit and an
alpha strip, with the optimisation stages reported as they run."""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from collab.editing import EditSettings, edit, preset_name
from collab.matching import reads

from collab_app import pictures
from collab_app.errors import UserError
from collab_app.handlers import KEEP, Progress, Request, _no_progress, model_config, waiting, waiting_note
from collab_app.inputs import (check_face, conditions_from, painter_value, read_attributes, read_face, read_mask,
                               read_text)
from collab_app.limits import ALPHA, EDIT_STRENGTH, STEPS, read_seed
from collab_app.state import AppState
from collab_app.streaming import raise_if_stopped, run_in_thread

PRESETS = {"fast": "100 + 150 iterations, attention only (CPU)", "faithful": "the official 500 + 1000"}
STRIP = (0.0, 0.5, 1.0, 1.5)


def edit_seconds(model: Any = "", face: Any = None, text: Any = "", mask: Any = None, alpha: Any = 1.0,
                 preset: Any = "fast", *rest, **named) -> int:
    """GPU time an edit asks for on a ZeroGPU Space, from the job's inputs (in the Edit tab's order):
    per edited modality the faithful preset runs 1500 optimisation steps (fast: 250), then five
    samplings; the official models' UNets are ~40x the demo's."""
    model, preset = named.get("model", model), named.get("preset", preset)
    seconds = 60 if preset == "fast" else 180
    return seconds * 4 if str(model).startswith("official") else seconds


@dataclass
class EditRequest(Request):
    pixels: np.ndarray | None = None
    alpha: float = 1.0
    preset: str = "fast"
    strength: float = 1.0  # the edited conditions' strength, times the model's default
    keep_layout: str | None = None  # the mask modality that keeps the face's parsed layout in the mix


@dataclass
class EditView:
    status: str
    edited: Any = KEEP
    strip: Any = KEEP
    seed: Any = KEEP
    steps: Any = KEEP
    alpha: Any = KEEP
    settings: Any = KEEP


def edit_settings(preset: str, seed: int) -> EditSettings:
    preset = preset_name(preset)
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose {' or '.join(PRESETS)}")
    settings = EditSettings.preset(preset)
    return replace(settings, seed=seed)


def edit_request(state: AppState, model_name: str, image: Any, text: Any, mask_value: Any, alpha: Any,
                 preset: str, seed: Any, steps: Any, randomize: bool = False, attributes: Any = None,
                 strength: Any = 1.0, keep_layout: bool = False) -> EditRequest:
    """Read and check the Edit tab's widgets; the face parser (when installed) must see a face.
    `keep_layout`: the parser's mask of the face takes part in the mix unedited (tuned on the face like
    the edited conditions), as in the edit evaluation: what `strength` weights a text edit against."""
    if image is None:
        raise UserError("upload a face image to edit")
    text, mask, attrs = read_text(text), read_mask(mask_value), read_attributes(attributes)
    edit_settings(preset, 0)
    name = state.resolve(model_name)
    cfg = model_config(state, name)
    targets = conditions_from(cfg, text, mask, attrs)
    pixels = read_face(image, cfg.image_size)
    check_face(state.get_evaluator(), pixels)
    strength, kept = EDIT_STRENGTH.correct(strength), layout_modality(state, cfg, targets) if keep_layout else None
    if strength != 1 and kept is None:
        warnings.warn(f"strength x{strength:g} changes nothing here: every condition in the mix is edited (a "
                      "strength weights the edited conditions against kept ones); tick 'keep the face's layout'")
    return EditRequest(name, targets, text, mask, attrs, read_seed(seed, randomize), STEPS.correct(steps),
                       pixels=pixels, alpha=ALPHA.correct(alpha), preset=preset, strength=strength,
                       keep_layout=kept)


def layout_modality(state: AppState, cfg, targets: dict) -> str | None:
    """The mask modality that keeps the face's layout, or None (said) where it cannot take part."""
    if state.get_evaluator() is None:
        raise UserError("keeping the face's layout needs the face parser (checkpoints/evaluator), which is not "
                        "installed")
    names = [m.name for m in cfg.modalities if reads(m) == ("mask",)]
    if not names:
        raise UserError(f"model {cfg.name} has no mask condition to keep the layout with")
    if names[0] in targets:
        warnings.warn("a target mask was given, so the face's own layout is not kept")
        return None
    return names[0]


def edit_stream(state: AppState, req: EditRequest, strip: tuple[float, ...] = STRIP,
                progress: Progress | None = None, stop: threading.Event | None = None):
    """EditViews through the optimisation stages, then the edit, then the alpha strip."""
    progress = progress or _no_progress
    yield EditView(waiting_note(state, req.model_name) or "starting", seed=req.seed, steps=req.steps,
                   alpha=req.alpha)
    model = state.model(req.model_name)
    settings = edit_settings(req.preset, req.seed)

    def work(report, cancelled):
        def on_iteration(stage: str, done: int, total: int, loss: float) -> None:
            progress((done, total), desc=stage)
            if done % 10 == 0 or done == total:
                report(EditView(f"{stage}: {done}/{total} (loss {loss:.4f})"))

        def sample(alpha: float) -> np.ndarray:
            return session.sample(model, alpha, steps=req.steps, seed=req.seed,
                                  strength=session.steering(model, req.strength),
                                  callback=lambda step: raise_if_stopped(cancelled)).images[0]

        with state.turn(req.model_name, cancelled, waiting(report, progress, EditView)):
            keep = {req.keep_layout: state.get_evaluator().parse(req.pixels[None])[0]} if req.keep_layout else None
            session = edit(model, req.pixels, req.conds, settings=settings, keep=keep, progress=on_iteration,
                           cancel=cancelled)
            report(EditView("sampling the edit"))
            progress(None)
            main = pictures.for_display(sample(req.alpha))
            report(EditView("sampling the alpha strip", main))
            results = []
            for k, a in enumerate(strip):
                progress((k, len(strip)), desc="alpha strip")
                results.append((sample(a), f"alpha {a}"))
        return main, results

    for kind, payload in run_in_thread(work, stop):
        if kind == "update":
            yield payload
        elif kind == "stopped":
            yield EditView("stopped")
        else:
            main, results = payload
            said = (f", {req.keep_layout} kept from the face" if req.keep_layout else "") + \
                (f", strength x{req.strength:g}" if req.strength != 1 else "")
            yield EditView(f"done ({req.preset} preset, alpha {req.alpha:g}{said}, seed {req.seed})", main,
                           [(req.pixels, "input")] + results, req.seed, req.steps, req.alpha,
                           req.record(alpha=req.alpha, preset=req.preset, sampler="ddim", eta=0.0,
                                      start="inversion", strength=req.strength, kept=req.keep_layout))


def parse_to_mask(state: AppState, model_name: str, image: Any) -> dict:
    """The parser's mask of an uploaded face, to start the mask editor from."""
    ev = state.get_evaluator()
    if ev is None:
        raise UserError("no face parser is installed (checkpoints/evaluator); start from an example mask instead")
    pixels = read_face(image, model_config(state, state.resolve(model_name)).image_size)
    return painter_value(ev.parse(pixels[None])[0])
