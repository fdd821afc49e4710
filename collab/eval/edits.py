"""Evaluating edits (Algorithm 3): does the edit reach its target, and does the rest stay?"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from collab.eval.heldout import HELDOUT_WORLD
from collab.evaluator import Evaluator, confusion, miou
from collab.model import CollaborativeModel


@dataclass
class EditCase:
    """A render, a target condition that changes one thing, and where that change may show."""

    kind: str  # "text" (beard) or "mask" (hair)
    image: np.ndarray
    labels: np.ndarray
    target: object  # caption or label map
    target_labels: np.ndarray  # the layout the edit should end with
    target_beard: int
    editable: np.ndarray  # bool [H, W]: pixels the edit is allowed to change


FACE_INTERIOR = (1, 2, 10, 11, 12)  # skin, nose, mouth, lips: where a beard grows


def edit_cases(n: int, size: int, world_seed: int = HELDOUT_WORLD) -> list[EditCase]:
    """Half beard edits (clean-shaven men -> long beard, by text), half hair edits (a new hair style
    of the same face, by mask). The mask target is the same face re-rendered with the new style."""
    from dataclasses import replace as dc_replace

    from collab.data.captions import make_caption
    from collab.data.faceworld import render_face, sample_attributes
    from collab.data.layout import face_seed

    cases, i = [], 0
    want_text, want_mask = (n + 1) // 2, n // 2
    while len(cases) < n:
        seed = face_seed(world_seed, 100_000 + i)
        i += 1
        rng = np.random.default_rng(seed)
        attrs = sample_attributes(rng)
        state = rng.bit_generator.state
        image, labels = render_face(attrs, rng, size)
        n_text = sum(c.kind == "text" for c in cases)
        if attrs.gender == "man" and attrs.beard == 0 and attrs.age > 0 and n_text < want_text:
            target = make_caption(dc_replace(attrs, beard=4), np.random.default_rng([seed, 3]), "train")
            cases.append(EditCase("text", image, labels, target, labels, 4, np.isin(labels, FACE_INTERIOR)))
        elif len(cases) - n_text < want_mask and attrs.hair_style in ("short", "long"):
            rng2 = np.random.default_rng()
            rng2.bit_generator.state = state  # same face, same noise, only the hair differs
            other = "long" if attrs.hair_style == "short" else "short"
            _, target_labels = render_face(dc_replace(attrs, hair_style=other), rng2, size)
            changed = _dilate(target_labels != labels, 2)
            cases.append(EditCase("mask", image, labels, target_labels, target_labels, int(attrs.beard), changed))
    return cases


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


def evaluate_edits(model: CollaborativeModel, ev: Evaluator, n: int = 10, settings=None, alpha: float = 1.0,
                   steps: int = 50, progress: Callable[[str], None] = print, strength: float = 1.0,
                   world_seed: int = HELDOUT_WORLD) -> dict:
    """Per edit kind: target reached (beard classifier / parser mIoU to the target layout), identity
    kept (mean absolute pixel difference outside the editable region, 0-255), seconds per edit; and
    from the same optimised session at alpha 0, whether it reproduces the input (difference over the
    whole image, parser mIoU between the input's parse and the result's). `strength`: the edited
    modality's strength in the mix against the kept ones, times the model's default (1 = the default
    mix); `world_seed`: another world is a validation set of edits."""
    from collab.editing import EditSettings, edit

    settings = settings or EditSettings.fast()
    text_name = next((m.name for m in model.config.modalities if m.kind == "text"), None)
    mask_name = next((m.name for m in model.config.modalities if m.kind == "mask"), None)
    rows: dict[str, list[dict]] = {"text": [], "mask": []}
    for k, case in enumerate(edit_cases(n, model.config.image_size, world_seed)):
        t0 = time.perf_counter()
        if case.kind == "text":
            targets, keep = {text_name: case.target}, {mask_name: case.labels}
        else:
            targets, keep = {mask_name: case.target}, {}
        session = edit(model, case.image, targets, settings=settings, keep=keep)
        steer = session.steering(model, strength)
        out = session.sample(model, alpha, steps=steps, seed=k, strength=steer).images[0]
        secs = time.perf_counter() - t0
        diff = np.abs(out.astype(np.float64) - case.image.astype(np.float64)).mean(-1)
        again = session.sample(model, 0.0, steps=steps, seed=k, strength=steer).images[0]
        parsed, source, parsed0 = ev.parse(np.stack([out, case.image, again]))  # one parser call
        r = {"alpha0_mad": float(np.abs(again.astype(np.float64) - case.image.astype(np.float64)).mean()),
             "alpha0_miou_input": miou(confusion(parsed0, source)),
             "seconds": secs, "mad_outside": float(diff[~case.editable].mean()),
             "mad_inside": float(diff[case.editable].mean()),
             "miou_target": miou(confusion(parsed, case.target_labels)),
             "beard": int(ev.attributes(out[None])["beard"][0]),
             "beard_before": int(ev.attributes(case.image[None])["beard"][0])}
        rows[case.kind].append(r)
        progress(f"  edit {k + 1}/{n} ({case.kind}): {secs:.1f} s, outside-region MAD {r['mad_outside']:.1f}, "
                 f"alpha 0: MAD {r['alpha0_mad']:.1f}, mIoU to the input {r['alpha0_miou_input']:.2f}")
    summary = {}
    for kind, rs in rows.items():
        if not rs:
            continue
        mean = lambda key: float(np.mean([r[key] for r in rs]))
        s = {"n": len(rs), "seconds_per_edit": mean("seconds"), "mad_outside": mean("mad_outside"),
             "mad_inside": mean("mad_inside"), "miou_target": mean("miou_target"),
             "alpha0_mad": mean("alpha0_mad"), "alpha0_miou_input": mean("alpha0_miou_input")}
        if kind == "text":
            s["long_beard_rate"] = float(np.mean([r["beard"] == 4 for r in rs]))
            s["any_beard_rate"] = float(np.mean([r["beard"] >= 1 for r in rs]))
            s["any_beard_rate_before"] = float(np.mean([r["beard_before"] >= 1 for r in rs]))
        summary[kind] = s
    return {"settings": asdict(settings), "alpha": alpha, "steps": steps, "strength": strength,
            "world_seed": world_seed, "summary": summary, "cases": rows}
