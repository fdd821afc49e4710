"""The About tab's text: the method with links, the selected model as it is now (load state, output
size, modalities), and a measurement of what its learned weights do."""
from __future__ import annotations

import os
import threading

import numpy as np
import torch

from collab.pipeline import CollabStep, generate
from collab.registry import MODELS

from collab_app.inputs import conditions_from, example_captions, example_files, read_mask
from collab_app.state import AppState, attribute_names
from collab_app.streaming import raise_if_stopped, run_in_thread

PAPER = "https://arxiv.org/abs/2304.10530"
OFFICIAL_CODE = "https://github.com/ziqihuangg/Collaborative-Diffusion"
MEASURE_STEPS = 10


def code_link() -> str:
    space = os.environ.get("SPACE_ID")  # set on Hugging Face Spaces
    here = f"[this Space's files](https://huggingface.co/spaces/{space}/tree/main)" if space else "this repository"
    return f"the `collab` package in {here} (README: Python API, command line, training)"


def model_lines(state: AppState, name: str) -> list[str]:
    try:
        cfg = state.config(name)
    except Exception:  # an unreadable config: the load state says why
        cfg = None
    load = state.load_state(name)
    entry = MODELS.get(name)
    lines = [f"- Model: `{name}`{f' ({entry.description})' if entry else ''}: **{load}**"]
    if name in state.models:
        cfg = state.models[name].config
    if cfg is None:
        return lines + ["- Output size and modalities: shown once the model is loaded"]
    mods = ", ".join(f"{m.name} ({m.kind}{', learned weights' if m.diffuser else ''})" for m in cfg.modalities)
    rule = cfg.default_rule if any(m.diffuser for m in cfg.modalities) else "none (one jointly trained network)"
    strengths = ", ".join(f"{m.name} x{m.strength:g}" for m in cfg.modalities if m.strength != 1.0)
    said = f"; default strengths: {strengths} (chosen on validation conditions)" if strengths else ""
    return lines + [f"- Output: {cfg.image_size}x{cfg.image_size} pixel RGB images",
                    f"- Modalities: {mods}; default combination rule: `{rule}`{said}"]


def about_markdown(state: AppState, model_name: str | None = None) -> str:
    name = state.resolve(model_name)
    evaluator = ("installed" if state.has_evaluator() else
                 "not installed (no metrics in Compare, no parser mask in Edit)")
    model = "\n".join(model_lines(state, name))
    return f"""
**Collaborative Diffusion for Multi-Modal Face Generation and Editing** (Huang, Chan, Jiang, Liu, CVPR 2023;
[paper]({PAPER}), [official code]({OFFICIAL_CODE})) joins pre-trained uni-modal diffusion models (here
text-to-face, mask-to-face, attributes-to-face) without retraining them. Small *dynamic diffusers*
predict, for every pixel and every denoising step, how much to trust each model; the noise
predictions are mixed with those weights (a per-pixel softmax). Editing (Algorithm 3) fine-tunes each
collaborator on your image, Imagic-style, then samples collaboratively. This app runs {code_link()}.

{model}
- Device: `{state.device}`, torch {torch.__version__}, {torch.get_num_threads()} threads
- Evaluator (face parser + attribute classifier): {evaluator}

**Responsible use.** Synthetic and edited faces can be misused to impersonate people, deceive, or
fabricate evidence; the paper's authors caution against such use in their discussion of societal
impact, and so do we. Do not edit images of real people without their consent, and label generated
images as synthetic. The embedded demo model was trained only on procedurally rendered faces made by
this project: it has never seen a photograph and knows no real person.
"""


def _example_conditions(state: AppState, name: str) -> dict:
    """The first example caption and mask, and "male" for a model that reads attributes."""
    cfg = state.model(name).config
    masks = example_files("masks")
    mask = read_mask(masks[0]) if masks else None
    return conditions_from(cfg, example_captions()[0], mask, ["male"] if attribute_names(cfg) else None)


def measure_weights(state: AppState, model_name: str, stop: threading.Event | None = None) -> str:
    """The learned weights on an example (first caption, first mask, attributes "male"): each
    modality's mean weight over the image at the start, middle and end of a short sampling run."""
    name = state.resolve(model_name)
    model = state.model(name)
    if not model.diffusers:
        return f"`{name}` is one jointly trained network: it has no learned weights between modalities."
    conds = _example_conditions(state, name)
    if len(conds) < 2:
        return f"`{name}` reads one modality of the examples only ({', '.join(conds)}): nothing to weigh."

    def work(report, cancelled):
        means: dict[str, list[float]] = {n: [] for n in conds}

        def on_step(step: CollabStep) -> None:
            raise_if_stopped(cancelled)
            for n, w in step.influence.items():
                means[n].append(float(w.float().mean()))

        with state.turn(name, cancelled):
            generate(model, conds, steps=MEASURE_STEPS, seed=0, callback=on_step)
        return means

    means = None
    for kind, payload in run_in_thread(work, stop):
        means = payload if kind == "result" else means
    if means is None:
        return "stopped"
    rows = ["| modality | first step | middle step | last step | mean over the run |", "|---|---|---|---|---|"]
    for n, m in means.items():
        rows.append(f"| {n} | {m[0]:.2f} | {m[len(m) // 2]:.2f} | {m[-1]:.2f} | {np.mean(m):.2f} |")
    lead = max(means, key=lambda n: np.mean(means[n]))
    return (f"Mean weight of each modality over the image on `{name}` ({MEASURE_STEPS} steps, seed 0, an example "
            f"caption and mask, rule `{model.config.default_rule}`):\n\n" + "\n".join(rows) +
            f"\n\nOn this model the learned weights lean most on **{lead}** ({np.mean(means[lead]):.0%} of the "
            "weight on average); the Influence tab shows where and when.")
