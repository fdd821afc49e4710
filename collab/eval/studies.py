"""The studies: the methods' table (with influence statistics and the denoising study) and the
sampler study, on the same held-out pairs and starting noise."""
from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import numpy as np

from collab.eval.denoising import denoising_errors
from collab.eval.heldout import HeldOut, held_out_pairs
from collab.eval.methods import Method, default_methods, paper_pair, training_hours
from collab.eval.metrics import attribute_metrics, chunks, diversity_of, flag_metrics, influence_summary, mask_metrics
from collab.eval.report import EvalReport
from collab.eval.sampling import SAMPLER_STUDY, EvalConfig, SamplerSetting, sample_set
from collab.evaluator import Evaluator, frechet_distance
from collab.influence import RegionAccumulator
from collab.model import CollaborativeModel


def evaluate(model: CollaborativeModel, ev: Evaluator, cfg: EvalConfig, methods: list[Method] | None = None,
             progress: Callable[[str], None] = print, extra_models: dict[str, CollaborativeModel] | None = None,
             sections: dict[str, list[Method]] | None = None,
             stage_seconds: dict[str, dict[str, float]] | None = None) -> tuple[EvalReport, dict[str, np.ndarray]]:
    """Run every method on the held-out pairs; returns the report and the samples (for figures).

    `sections` groups methods into tables (default: one, the paper's); `extra_models` are the models
    that rows with `Method.model` other than "main" sample from (e.g. the joint baseline);
    `stage_seconds` (per model key, from each model's training.json) gives the training-cost column.
    """
    models = {"main": model, **(extra_models or {})}
    if sections is None:
        sections = {"paper": methods or default_methods(model)}
    methods = [m for ms in sections.values() for m in ms]
    data = held_out_pairs(max(cfg.n, cfg.diversity_pairs), model.config.image_size, cfg.world_seed)
    real = _Reference(ev, data, cfg.n)
    report = EvalReport(config=asdict(cfg) | {"model": model.config.name, "methods": [asdict(m) for m in methods],
                                              "models": {k: v.config.name for k, v in models.items()}},
                        sections={title: [m.name for m in ms] for title, ms in sections.items()})
    report.real = real.metrics(ev, data.images[:cfg.n])
    progress(f"real renders: parser mIoU {report.real['miou']:.3f}, attribute accuracy {report.real['acc_mean']:.3f}")
    gallery: dict[str, np.ndarray] = {}
    for m in methods:
        net = models[m.model]
        acc = RegionAccumulator() if len(m.modalities) > 1 and m.mode != "composable" else None
        s = sample_set(net, m, data, cfg, n=cfg.n, callback=acc, progress=progress)
        row = real.metrics(ev, s.images)
        if any(net.config.modality(n).kind == "text" for n in m.modalities):
            para = sample_set(net, m, data, cfg, paraphrase=True, n=cfg.n, progress=progress)
            row |= attribute_metrics(ev, para.images, real.targets, prefix="para_")
        feats = chunks(ev.features, s.images)
        row["frechet"] = frechet_distance(feats, real.features) if cfg.n > 2 else float("nan")
        row["diversity"] = diversity_of(net, ev, m, data, cfg)
        row["seconds_per_image"] = s.seconds_per_image
        row["train_hours"] = training_hours(m, net, (stage_seconds or {}).get(m.model))
        report.rows[m.name] = row
        gallery[m.name] = s.images[:8]
        if acc is not None and acc.sums:
            report.influence[m.name] = influence_summary(acc)
    pair = paper_pair(model)
    if cfg.denoising_study and len(pair) == 2 and all(k in model.diffusers for k in pair):
        report.denoising = denoising_errors(model, pair, data, cfg.n, seed=cfg.seed)
    if cfg.sampler_study and len(model.names) > 1:
        report.samplers = sampler_study(model, ev, cfg, data, real, progress)
    return report, gallery


class _Reference:
    """The first `n` held-out pairs' targets and the real renders' features, measured once."""

    def __init__(self, ev: Evaluator, data: HeldOut, n: int) -> None:
        self.targets = {k: v[:n] for k, v in data.targets.items()}
        self.labels = data.labels[:n]
        self.flags = data.flags[:n]
        self.features = chunks(ev.features, data.images[:n])

    def metrics(self, ev: Evaluator, images: np.ndarray) -> dict[str, float]:
        return (mask_metrics(ev, images, self.labels) | attribute_metrics(ev, images, self.targets)
                | flag_metrics(ev, images, self.flags))


def sampler_study(model: CollaborativeModel, ev: Evaluator, cfg: EvalConfig, data: HeldOut, real: _Reference,
                  progress: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """Collaborative sampling of the paper's pair under each setting of SAMPLER_STUDY."""
    collab_method = Method("collaborative", paper_pair(model))
    n = min(cfg.sampler_n, cfg.n)
    rows = {}
    for st in SAMPLER_STUDY:
        steps = min(st.steps, cfg.steps) if cfg.steps < 20 else st.steps  # small-N runs shrink everything
        st = SamplerSetting(st.name, st.sampler, steps, st.eta)
        s = sample_set(model, collab_method, data, cfg, sampler=st, n=n, progress=progress)
        row = mask_metrics(ev, s.images, real.labels[:n]) | attribute_metrics(
            ev, s.images, {k: v[:n] for k, v in real.targets.items()})
        row["frechet"] = frechet_distance(chunks(ev.features, s.images), real.features) if n > 2 else float("nan")
        row["seconds_per_image"] = s.seconds_per_image
        row["steps"] = steps
        rows[st.name] = row
    return rows
