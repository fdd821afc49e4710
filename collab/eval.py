"""Reproduce the paper's kind of table on the embedded face world.

    python -m collab.eval --model demo --evaluator checkpoints/evaluator --out results/eval [--n 100]

Held-out (mask, caption) pairs come from a face-world seed the demo model never saw. Every method
samples the same pairs from the same starting noise (one seed per batch), so rows differ only by
the method. Per method: mask mIoU and pixel accuracy (evaluator's parser on the sample vs the input
mask), attribute accuracy (evaluator's classifier vs the caption's attributes) with training
phrasings and with held-out paraphrases, Frechet distance to real renders in the classifier's
feature space, and diversity (mean pairwise feature distance among samples of one condition set).
Influence statistics (per region and timestep) and a sampler study come with it. Writes
results.json, results.md and PNG plots into --out.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from collab.evaluator import (CAPTION_HEADS, Evaluator, attribute_targets, binary_attributes, confusion, diversity,
                              frechet_distance, miou, pixel_accuracy)
from collab.influence import RegionAccumulator, layout_first_score
from collab.model import CollaborativeModel
from collab.pipeline import generate

HELDOUT_WORLD = 1  # the demo model trained on world seed 0


@dataclass(frozen=True)
class Method:
    name: str
    modalities: tuple[str, ...]
    mode: str = "collaborative"
    model: str = "main"  # which of the evaluated models samples this row ("main", "joint", ...)


def paper_pair(model: CollaborativeModel) -> tuple[str, ...]:
    """The paper's two modalities (a mask-kind and a text-kind one) when the model has both, else all."""
    kinds = {m.kind: m.name for m in reversed(model.config.modalities)}
    pair = tuple(n for n in model.names if n in (kinds.get("mask"), kinds.get("text")))
    return pair if len(pair) == 2 else tuple(model.names)


def default_methods(model: CollaborativeModel, modalities: tuple[str, ...] | None = None,
                    ablations: bool = True) -> list[Method]:
    """Each modality alone, then together composable / collaborative / the two ablations (named
    without suffix: the paper's table). `modalities` defaults to the paper's pair."""
    pair = tuple(modalities) if modalities else paper_pair(model)
    rows = [Method(f"{n} only", (n,)) for n in pair]
    if len(pair) > 1:
        rows += [Method("composable", pair, "composable"), Method("collaborative", pair)]
        if ablations:
            rows += [Method("w/o spatial", pair, "no_spatial"), Method("w/o temporal", pair, "no_temporal")]
    return rows


def joint_method(joint: CollaborativeModel) -> Method:
    """The jointly trained baseline's row: one network reading all its conditions at once."""
    parts = tuple(p.name for p in joint.config.modalities[0].encoder.parts)
    return Method(f"joint LDM ({' + '.join(parts)})", joint.names, "collaborative", "joint")


def beyond_two_methods(model: CollaborativeModel, joint: CollaborativeModel | None = None) -> list[Method]:
    """Rows of the "beyond two modalities" table: the modalities outside the paper's pair alone, each
    of them with the mask (composable and collaborative), all modalities together, and the jointly
    trained model on its own conditions."""
    pair = paper_pair(model)
    extra = [n for n in model.names if n not in pair]
    if not extra:
        return []
    mask = next((m.name for m in model.config.modalities if m.kind == "mask"), None)
    rows = [Method(f"{n} only", (n,)) for n in extra]
    for n in extra:
        if mask:
            both = tuple(x for x in model.names if x in (mask, n))
            rows += [Method(f"composable ({' + '.join(both)})", both, "composable"),
                     Method(f"collaborative ({' + '.join(both)})", both)]
    everything = tuple(model.names)
    rows += [Method(f"composable ({' + '.join(everything)})", everything, "composable"),
             Method(f"collaborative ({' + '.join(everything)})", everything)]
    if joint is not None:
        rows.append(joint_method(joint))
    return rows


@dataclass(frozen=True)
class SamplerSetting:
    name: str
    sampler: str
    steps: int
    eta: float = 0.0


SAMPLER_STUDY = (SamplerSetting("DDIM 50, eta 1", "ddim", 50, 1.0), SamplerSetting("DDIM 50, eta 0", "ddim", 50, 0.0),
                 SamplerSetting("DDIM 20, eta 0", "ddim", 20, 0.0), SamplerSetting("DPM-Solver++ 2M 20", "dpmpp_2m", 20),
                 SamplerSetting("DPM-Solver++ 2M 10", "dpmpp_2m", 10))


@dataclass
class EvalConfig:
    n: int = 100
    steps: int = 50
    eta: float = 1.0
    sampler: str = "ddim"
    batch_size: int = 10
    rule: str | None = None
    seed: int = 0
    diversity_pairs: int = 8
    diversity_samples: int = 4
    sampler_study: bool = True
    sampler_n: int = 40
    denoising_study: bool = True  # per-timestep noise-prediction error of each collaborator and the mix


@dataclass
class HeldOut:
    """The evaluation set: real renders, their masks, and two captions per face."""

    images: np.ndarray  # [N, H, W, 3]
    labels: np.ndarray  # [N, H, W]
    captions: list[str]  # training phrasings
    paraphrases: list[str]  # held-out phrasings
    targets: dict[str, np.ndarray]  # classifier head -> class index per face
    flags: np.ndarray  # [N, K] binary attributes (BINARY_ATTRIBUTES order)


def held_out_pairs(n: int, size: int, world_seed: int = HELDOUT_WORLD) -> HeldOut:
    from collab.data.captions import make_caption
    from collab.data.faceworld import render
    from collab.data.layout import face_seed

    faces = [render(face_seed(world_seed, i), size) for i in range(n)]
    para = [make_caption(f.attributes, np.random.default_rng([face_seed(world_seed, i), 2]), "heldout")
            for i, f in enumerate(faces)]
    targets = [attribute_targets(f.attributes) for f in faces]
    return HeldOut(np.stack([f.image for f in faces]), np.stack([f.labels for f in faces]),
                   [f.caption for f in faces], para, {k: np.array([t[k] for t in targets]) for k in targets[0]},
                   np.stack([f.attributes.to_binary_vector() for f in faces]))


def _raw_conditions(kind: str, encoder_config, data: HeldOut, idx: np.ndarray, paraphrase: bool) -> list:
    """The held-out raw conditions of a modality's encoder (its registered kind's `held_out`)."""
    from collab import kinds

    return kinds.kind_of(encoder_config).held_out(encoder_config, data, idx, paraphrase)


def conditions_for(model: CollaborativeModel, modalities, data: HeldOut, idx: np.ndarray, paraphrase: bool) -> dict:
    """Raw conditions of the pairs `idx` for the given modalities (by kind, not by name)."""
    out = {}
    for name in modalities:
        m = model.config.modality(name)
        out[name] = _raw_conditions(m.kind, m.encoder, data, idx, paraphrase)
    return out


@dataclass
class Samples:
    images: np.ndarray
    seconds_per_image: float


def sample_set(model: CollaborativeModel, method: Method, data: HeldOut, cfg: EvalConfig, *, paraphrase: bool = False,
               sampler: SamplerSetting | None = None, n: int | None = None,
               callback: RegionAccumulator | None = None, progress: Callable[[str], None] = print,
               strength: dict | None = None) -> Samples:
    n = len(data.captions) if n is None else n
    s = sampler or SamplerSetting(cfg.sampler, cfg.sampler, cfg.steps, cfg.eta)
    out, t0 = [], time.perf_counter()
    for b, start in enumerate(range(0, n, cfg.batch_size)):
        idx = np.arange(start, min(start + cfg.batch_size, n))
        if callback is not None:
            callback.labels = data.labels[idx]
        res = generate(model, conditions_for(model, method.modalities, data, idx, paraphrase), mode=method.mode,
                       rule=cfg.rule, sampler=s.sampler, steps=s.steps, eta=s.eta, seed=cfg.seed + b,
                       batch_size=len(idx), callback=callback, strength=strength)
        out.append(res.images)
    seconds = (time.perf_counter() - t0) / n
    progress(f"  {method.name}{' (paraphrases)' if paraphrase else ''}{f' [{s.name}]' if sampler else ''}: "
             f"{n} images, {seconds:.2f} s/image")
    return Samples(np.concatenate(out), seconds)


def mask_metrics(ev: Evaluator, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    conf = confusion(ev.parse(images), labels)
    return {"miou": miou(conf), "pixel_acc": pixel_accuracy(conf)}


def attribute_metrics(ev: Evaluator, images: np.ndarray, targets: dict[str, np.ndarray], prefix: str = "") -> dict:
    """Accuracy of the caption's attributes (gender, age level, beard level) and their mean."""
    preds = ev.attributes(images)
    acc = {f"{prefix}acc_{k}": float((preds[k] == targets[k]).mean()) for k in CAPTION_HEADS if k in preds}
    return acc | {f"{prefix}acc_mean": float(np.mean(list(acc.values())))}


def flag_metrics(ev: Evaluator, images: np.ndarray, flags: np.ndarray) -> dict:
    """Accuracy of the binary attributes (the attribute modality's condition): the mean over all of
    them, and over those a mask cannot show (gender, age bins, beard, smiling)."""
    from collab.data.faceworld import BINARY_ATTRIBUTES

    if "smiling" not in ev.classifier.config.heads:  # an evaluator trained before the attribute heads
        return {}
    hit = binary_attributes(ev.attributes(images)) == flags
    hidden = [BINARY_ATTRIBUTES.index(k) for k in ("male", "young", "old", "beard", "smiling")]
    return {"flag_acc": float(hit.mean()), "flag_acc_unmasked": float(hit[:, hidden].mean()),
            **{f"flag_{k}": float(hit[:, j].mean()) for j, k in enumerate(BINARY_ATTRIBUTES)}}


def chunks(fn, images: np.ndarray, size: int = 64) -> np.ndarray:
    return np.concatenate([fn(images[i:i + size]) for i in range(0, len(images), size)])


@dataclass
class EvalReport:
    config: dict
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    influence: dict = field(default_factory=dict)
    samplers: dict[str, dict[str, float]] = field(default_factory=dict)
    real: dict[str, float] = field(default_factory=dict)
    sections: dict[str, list[str]] = field(default_factory=dict)  # table title -> its row names
    denoising: dict = field(default_factory=dict)  # see denoising_errors


def training_hours(method: Method, model: CollaborativeModel, stage_seconds: dict[str, float] | None) -> float:
    """Wall hours on the training machine of the stages a method uses: its collaborators (or the joint
    LDM), plus the dynamic diffusers when it mixes by learned weights. The shared VAE is left out."""
    if not stage_seconds:
        return float("nan")
    stages = [f"ldm_{n}" for n in method.modalities]
    if len(method.modalities) > 1 and method.mode != "composable":
        stages.append("diffusers")
    if any(st not in stage_seconds for st in stages):
        return float("nan")
    return sum(stage_seconds[st] for st in stages) / 3600


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
    size = model.config.image_size
    data = held_out_pairs(max(cfg.n, cfg.diversity_pairs), size)
    targets = {k: v[:cfg.n] for k, v in data.targets.items()}
    labels = data.labels[:cfg.n]
    real_feats = chunks(ev.features, data.images[:cfg.n])
    flags = data.flags[:cfg.n]
    report = EvalReport(config=asdict(cfg) | {"model": model.config.name, "methods": [asdict(m) for m in methods],
                                              "models": {k: v.config.name for k, v in models.items()}},
                        sections={title: [m.name for m in ms] for title, ms in sections.items()})
    report.real = (mask_metrics(ev, data.images[:cfg.n], labels) | attribute_metrics(ev, data.images[:cfg.n], targets)
                   | flag_metrics(ev, data.images[:cfg.n], flags))
    progress(f"real renders: parser mIoU {report.real['miou']:.3f}, attribute accuracy {report.real['acc_mean']:.3f}")
    gallery: dict[str, np.ndarray] = {}
    for m in methods:
        net = models[m.model]
        acc = RegionAccumulator() if len(m.modalities) > 1 and m.mode != "composable" else None
        s = sample_set(net, m, data, cfg, n=cfg.n, callback=acc, progress=progress)
        row = (mask_metrics(ev, s.images, labels) | attribute_metrics(ev, s.images, targets)
               | flag_metrics(ev, s.images, flags))
        if any(net.config.modality(n).kind == "text" for n in m.modalities):
            para = sample_set(net, m, data, cfg, paraphrase=True, n=cfg.n, progress=progress)
            row |= attribute_metrics(ev, para.images, targets, prefix="para_")
        feats = chunks(ev.features, s.images)
        row["frechet"] = frechet_distance(feats, real_feats) if cfg.n > 2 else float("nan")
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
        collab_method = Method("collaborative", pair)
        n = min(cfg.sampler_n, cfg.n)
        for st in SAMPLER_STUDY:
            steps = min(st.steps, cfg.steps) if cfg.steps < 20 else st.steps  # small-N runs shrink everything
            st = SamplerSetting(st.name, st.sampler, steps, st.eta)
            s = sample_set(model, collab_method, data, cfg, sampler=st, n=n, progress=progress)
            row = mask_metrics(ev, s.images, labels[:n]) | attribute_metrics(ev, s.images, {k: v[:n] for k, v in targets.items()})
            row["frechet"] = frechet_distance(chunks(ev.features, s.images), real_feats) if n > 2 else float("nan")
            row["seconds_per_image"] = s.seconds_per_image
            row["steps"] = steps
            report.samplers[st.name] = row
    return report, gallery


def diversity_of(model, ev: Evaluator, m: Method, data: HeldOut, cfg: EvalConfig) -> float:
    """Mean over a few condition sets of the mean pairwise feature distance among their samples."""
    values = []
    for i in range(min(cfg.diversity_pairs, len(data.captions))):
        idx = np.full(cfg.diversity_samples, i)
        res = generate(model, conditions_for(model, m.modalities, data, idx, False), mode=m.mode, rule=cfg.rule,
                       sampler=cfg.sampler, steps=cfg.steps, eta=cfg.eta, seed=10_000 + cfg.seed + i,
                       batch_size=cfg.diversity_samples)
        values.append(diversity(ev.features(res.images)))
    return float(np.mean(values)) if values else float("nan")


def influence_summary(acc: RegionAccumulator) -> dict:
    """Per modality: region x step means, the overall share per step and the layout-first score."""
    out = {"timesteps": [int(t) for t in acc.timesteps], "regions": acc.names, "modalities": {}}
    for name in acc.sums:
        r = acc.result(name)
        k = len(acc.regions)  # the regions partition the image; boundaries/interiors are extra columns
        share = acc.sums[name][:, :k].sum(1) / np.maximum(acc.counts[:, :k].sum(1), 1)
        out["modalities"][name] = {
            "per_region": np.nan_to_num(r.mean, nan=-1).round(4).tolist(),
            "share": share.round(4).tolist(),
            "layout_first_score": layout_first_score(r.timesteps, share),
            "boundary_minus_interior": float(np.nanmean(r.mean[:, -2] - r.mean[:, -1])) if acc.with_boundary else None,
        }
    return out


DENOISING_TIMESTEPS = (25, 100, 250, 400, 550, 700, 850, 980)


def denoising_errors(model: CollaborativeModel, modalities: tuple[str, ...], data: HeldOut, n: int,
                     timesteps=DENOISING_TIMESTEPS, seed: int = 0) -> dict:
    """Why the dynamic diffusers weigh the collaborators as they do: at fixed timesteps, the
    noise-prediction MSE (Algorithm 1's loss) of each collaborator alone, of the learned per-pixel
    mix, and of the best fixed convex weight (one scalar per timestep, searched on the same batch,
    so it is an optimistic reference), on the held-out renders (VAE posterior means)."""
    import torch

    from collab.combination import combine, softmax_influence
    from collab.schedule import DiffusionSchedule

    cfg = model.config
    sched = DiffusionSchedule.linear(cfg.timesteps, cfg.linear_start, cfg.linear_end)
    idx = np.arange(min(n, len(data.captions)))
    images = torch.from_numpy(data.images[idx]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    z0 = model.encode(images)
    raws = conditions_for(model, modalities, data, idx, False)
    ctx = {k: model.encode_condition(k, raws[k]) for k in modalities}
    g = torch.Generator().manual_seed(seed)
    grid = torch.linspace(0, 1, 21)
    rows = []
    with torch.no_grad():
        for t in timesteps:
            tt = torch.full((len(idx),), int(t), device=z0.device)
            noise = torch.randn(z0.shape, generator=g).to(z0.device)
            x_t = sched.q_sample(z0, tt, noise)
            eps = torch.stack([model.run("collaborators", k, x_t, tt, ctx[k]) for k in modalities]).float()
            w = softmax_influence(torch.stack([model.run("diffusers", k, x_t, tt, ctx[k]) for k in modalities]))
            row = {"t": int(t), **{k: float((eps[i] - noise).pow(2).mean()) for i, k in enumerate(modalities)},
                   "learned mix": float((combine(eps, w) - noise).pow(2).mean()),
                   "learned weight": {k: float(w[i].mean()) for i, k in enumerate(modalities)}}
            if len(modalities) == 2:  # best fixed convex weight of the first modality
                errs = torch.stack([(a * eps[0] + (1 - a) * eps[1] - noise).pow(2).mean() for a in grid])
                row["best fixed mix"] = float(errs.min())
                row["best fixed weight"] = {modalities[0]: float(grid[int(errs.argmin())])}
            rows.append(row)
    return {"modalities": list(modalities), "n": len(idx), "rows": rows}


# ---------------------------------------------------------------- editing (Algorithm 3)


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
                   steps: int = 50, progress: Callable[[str], None] = print) -> dict:
    """Per edit kind: target reached (beard classifier / parser mIoU to the target layout), identity
    kept (mean absolute pixel difference outside the editable region, 0-255), seconds per edit."""
    from collab.editing import EditSettings, edit

    settings = settings or EditSettings.fast()
    text_name = next((m.name for m in model.config.modalities if m.kind == "text"), None)
    mask_name = next((m.name for m in model.config.modalities if m.kind == "mask"), None)
    rows: dict[str, list[dict]] = {"text": [], "mask": []}
    for k, case in enumerate(edit_cases(n, model.config.image_size)):
        t0 = time.perf_counter()
        if case.kind == "text":
            targets, keep = {text_name: case.target}, {mask_name: case.labels}
        else:
            targets, keep = {mask_name: case.target}, {}
        session = edit(model, case.image, targets, settings=settings, keep=keep)
        out = session.sample(model, alpha, steps=steps, seed=k).images[0]
        secs = time.perf_counter() - t0
        diff = np.abs(out.astype(np.float64) - case.image.astype(np.float64)).mean(-1)
        parsed = ev.parse(out[None])[0]
        r = {"seconds": secs, "mad_outside": float(diff[~case.editable].mean()),
             "mad_inside": float(diff[case.editable].mean()),
             "miou_target": miou(confusion(parsed, case.target_labels)),
             "beard": int(ev.attributes(out[None])["beard"][0]),
             "beard_before": int(ev.attributes(case.image[None])["beard"][0])}
        rows[case.kind].append(r)
        progress(f"  edit {k + 1}/{n} ({case.kind}): {secs:.1f} s, outside-region MAD {r['mad_outside']:.1f}")
    summary = {}
    for kind, rs in rows.items():
        if not rs:
            continue
        mean = lambda key: float(np.mean([r[key] for r in rs]))
        s = {"n": len(rs), "seconds_per_edit": mean("seconds"), "mad_outside": mean("mad_outside"),
             "mad_inside": mean("mad_inside"), "miou_target": mean("miou_target")}
        if kind == "text":
            s["long_beard_rate"] = float(np.mean([r["beard"] == 4 for r in rs]))
            s["any_beard_rate"] = float(np.mean([r["beard"] >= 1 for r in rs]))
            s["any_beard_rate_before"] = float(np.mean([r["beard_before"] >= 1 for r in rs]))
        summary[kind] = s
    return {"settings": asdict(settings), "alpha": alpha, "steps": steps, "summary": summary, "cases": rows}


# ---------------------------------------------------------------- outputs


COLUMNS = (("miou", "mask mIoU"), ("pixel_acc", "pixel acc"), ("acc_mean", "attr acc"), ("acc_age", "age"),
           ("acc_beard", "beard"), ("acc_gender", "gender"), ("para_acc_mean", "attr acc (paraphrases)"),
           ("frechet", "Frechet"), ("diversity", "diversity"), ("seconds_per_image", "s/image"))
BEYOND_COLUMNS = (("miou", "mask mIoU"), ("pixel_acc", "pixel acc"), ("flag_acc", "attribute acc (12 flags)"),
                  ("flag_acc_unmasked", "attribute acc (gender, age, beard, smiling)"), ("acc_mean", "caption attr acc"),
                  ("frechet", "Frechet"), ("diversity", "diversity"), ("train_hours", "training h (2 CPU cores)"),
                  ("seconds_per_image", "s/image"))
SECTION_COLUMNS = {"paper": COLUMNS, "beyond two modalities": BEYOND_COLUMNS}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(report: EvalReport) -> str:
    lines = [f"Model `{report.config['model']}`, {report.config['n']} held-out pairs, {report.config['sampler']} "
             f"{report.config['steps']} steps (eta {report.config['eta']}), rule "
             f"{report.config['rule'] or 'model default'}.", "",
             ]
    sections = report.sections or {"paper": list(report.rows)}
    for title, names in sections.items():
        cols = SECTION_COLUMNS.get(title, COLUMNS)
        if title != "paper":
            lines += ["", f"**{title.capitalize()}**", ""]
        lines += ["| method | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines.append("| real renders | " + " | ".join(_fmt(report.real.get(k)) for k, _ in cols) + " |")
        for name in names:
            lines.append(f"| {name} | " + " | ".join(_fmt(report.rows[name].get(k)) for k, _ in cols) + " |")
    if report.influence:
        lines += ["", "| method | modality | layout-first score (corr(t, share)) | share at first step | "
                  "share at last step | boundary - interior |", "|---|---|---|---|---|---|"]
        for mname, inf in report.influence.items():
            for mod, d in inf["modalities"].items():
                lines.append(f"| {mname} | {mod} | {d['layout_first_score']:.3f} | {d['share'][0]:.3f} | "
                             f"{d['share'][-1]:.3f} | {_fmt(d['boundary_minus_interior'])} |")
    if report.denoising:
        lines += denoising_markdown(report.denoising)
    if report.samplers:
        cols = (("steps", "steps"), ("miou", "mask mIoU"), ("acc_mean", "attr acc"), ("frechet", "Frechet"),
                ("seconds_per_image", "s/image"))
        lines += ["", "| sampler (collaborative) | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, row in report.samplers.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(row.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def denoising_markdown(d: dict) -> list[str]:
    mods = d["modalities"]
    first = mods[0]
    head = ["t", *(f"MSE {k} only" for k in mods), "MSE learned mix", f"learned weight {first}",
            "MSE best fixed mix", f"best fixed weight {first}"]
    lines = ["", f"Noise-prediction error by timestep ({d['n']} held-out renders; Algorithm 1's loss):", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in d["rows"]:
        vals = [str(r["t"]), *(f"{r[k]:.4f}" for k in mods), f"{r['learned mix']:.4f}",
                f"{r['learned weight'][first]:.2f}",
                f"{r['best fixed mix']:.4f}" if "best fixed mix" in r else "–",
                f"{r['best fixed weight'][first]:.2f}" if "best fixed weight" in r else "–"]
        lines.append("| " + " | ".join(vals) + " |")
    return lines


def plot_influence(report: EvalReport, path: Path, method: str = "collaborative") -> Path | None:
    """Mean weight of each modality per region over sampling (t runs 999 -> 0, left to right)."""
    inf = report.influence.get(method)
    if not inf:
        return None
    from collab.influence import RegionInfluence, plot_region_influence

    t = np.array(inf["timesteps"])
    curves, notes = {}, {}
    for mod, stats in inf["modalities"].items():
        per = np.array(stats["per_region"], np.float64)
        curves[mod] = RegionInfluence(t, list(inf["regions"]), np.where(per >= 0, per, np.nan))  # -1: absent
        notes[mod] = f"{mod}: layout-first score {stats['layout_first_score']:.2f}"
    fig = plot_region_influence(curves, f"{method}: influence per face region "
                                        f"(rule {report.config['rule'] or 'model default'})", notes)
    fig.savefig(path, dpi=110)
    return path


def plot_samples(gallery: dict[str, np.ndarray], path: Path, per_row: int = 6) -> Path:
    """Rows = methods, columns = the first pairs: a qualitative side-by-side."""
    from collab.visualize import grid, label

    cells = []
    for name, imgs in gallery.items():
        for j in range(per_row):
            cells.append(label(imgs[j] if j < len(imgs) else np.zeros_like(imgs[0]), name if j == 0 else ""))
    from PIL import Image

    Image.fromarray(grid(cells, ncols=per_row)).save(path)
    return path


def write_outputs(report: EvalReport, gallery: dict[str, np.ndarray], out: Path, inputs: HeldOut | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "results.json", out / "results.md", out / "gallery.npz"]
    files[0].write_text(json.dumps(asdict(report), indent=1))
    files[1].write_text(markdown(report))
    np.savez_compressed(files[2], **gallery)  # the samples shown, so a later --only run can add rows
    if inputs is not None:
        from collab.masks import colorize

        n = min(len(inputs.images), len(next(iter(gallery.values()))))
        gallery = {"input mask": np.stack([colorize(inputs.labels[i]) for i in range(n)]),
                   "real render": inputs.images[:n]} | gallery
    files.append(plot_samples(gallery, out / "samples.png"))
    p = plot_influence(report, out / "influence.png")
    if p:
        files.append(p)
    return files


def merge_reports(previous: dict, new: EvalReport, sections: dict[str, list[Method]]) -> EvalReport:
    """`new`'s rows added to (or replacing) those of a previous results.json of the same settings."""
    settings = ("n", "steps", "eta", "sampler", "rule", "seed", "batch_size", "diversity_pairs", "diversity_samples")
    differ = [k for k in settings if previous["config"].get(k) != new.config.get(k)]
    if differ:
        raise SystemExit(f"cannot merge into results made with other settings: {', '.join(differ)} differ")
    rows = previous["rows"] | new.rows
    order = {t: [m.name for m in ms if m.name in rows] for t, ms in sections.items()}
    config = previous["config"] | {"merged_rows": sorted(new.rows)}
    return EvalReport(config, rows, previous.get("influence", {}) | new.influence, previous.get("samplers", {}),
                      previous.get("real", {}), {t: names for t, names in order.items() if names},
                      previous.get("denoising", {}))


def _model_dir(source: str) -> Path | None:
    from collab.registry import MODELS, checkpoints_dir

    path = Path(source)
    if path.is_dir():
        return path
    if source in MODELS and (checkpoints_dir() / source).is_dir():
        return checkpoints_dir() / source
    return None


def _try_load(source: str) -> CollaborativeModel | None:
    from collab.registry import load_model

    if source == "none" or _model_dir(source) is None:
        return None
    return load_model(source)


def stage_seconds_of(source: str) -> dict[str, float] | None:
    """Per-stage training seconds recorded in a model directory's training.json (None if absent)."""
    d = _model_dir(source)
    f = d / "training.json" if d else None
    if f is None or not f.exists():
        return None
    return json.loads(f.read_text()).get("stage_seconds")


def run_frontier_study(model: CollaborativeModel, ev: Evaluator, cfg: EvalConfig, args) -> None:
    from collab.frontier import TEXT_STRENGTHS, TEXT_WEIGHTS, frontier_markdown, frontier_settings, run_frontier, \
        write_frontier

    settings = frontier_settings(model, args.frontier_weights or TEXT_WEIGHTS, args.frontier_strengths or TEXT_STRENGTHS)
    result = run_frontier(model, ev, cfg, settings)
    files = write_frontier(result, args.out)
    print(frontier_markdown(result))
    print("wrote " + ", ".join(str(f) for f in files))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="model name or directory")
    ap.add_argument("--evaluator", default="checkpoints/evaluator")
    ap.add_argument("--out", type=Path, default=Path("results/eval"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--sampler", default="ddim", choices=("ddim", "dpmpp_2m"))
    ap.add_argument("--rule", choices=("paper", "official"), default=None)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--diversity-pairs", type=int, default=8)
    ap.add_argument("--no-sampler-study", action="store_true")
    ap.add_argument("--sampler-n", type=int, default=40)
    ap.add_argument("--no-denoising-study", action="store_true",
                    help="skip the per-timestep noise-prediction error table")
    ap.add_argument("--joint", default="joint", help="the jointly trained baseline (name or directory) for the "
                    "'beyond two modalities' table, used when present; 'none' to skip")
    ap.add_argument("--no-beyond", action="store_true", help="only the paper's table (mask + text)")
    ap.add_argument("--only", nargs="+", default=None, metavar="ROW",
                    help="run only these rows (exact names) and merge them into an existing results.json in --out "
                         "with the same settings, e.g. a row whose model was trained later")
    ap.add_argument("--edits", type=int, default=0, help="also evaluate this many edits (fast preset)")
    ap.add_argument("--only-edits", action="store_true", help="skip the generation table")
    ap.add_argument("--edit-alpha", type=float, default=1.0, help="alpha of the evaluated edits")
    ap.add_argument("--edit-preset", choices=("fast", "official"), default="fast",
                    help="optimisation settings of the evaluated edits (official: 500 + 1000 iterations)")
    ap.add_argument("--frontier", action="store_true",
                    help="also the layout-vs-text frontier (collab.frontier): frontier.md/.json/.png")
    ap.add_argument("--only-frontier", action="store_true", help="only the frontier")
    ap.add_argument("--frontier-weights", type=float, nargs="+", default=None, help="composable text weights")
    ap.add_argument("--frontier-strengths", type=float, nargs="+", default=None, help="collaborative text strengths")
    args = ap.parse_args(argv)
    if not (Path(args.evaluator) / "evaluator.yaml").exists():
        ap.error(f"no evaluator in {args.evaluator} (train one: python -m collab.train.evaluator --out {args.evaluator})")

    from collab.registry import load_model

    import torch

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    model = load_model(args.model)
    ev = Evaluator.load(args.evaluator)
    cfg = EvalConfig(n=args.n, steps=args.steps, eta=args.eta, sampler=args.sampler, batch_size=args.batch_size,
                     rule=args.rule, seed=args.seed, diversity_pairs=args.diversity_pairs,
                     sampler_study=not args.no_sampler_study, sampler_n=args.sampler_n,
                     denoising_study=not args.no_denoising_study)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.edits:
        from collab.editing import EditSettings

        settings = EditSettings.official() if args.edit_preset == "official" else EditSettings.fast()
        res = evaluate_edits(model, ev, args.edits, settings=settings, alpha=args.edit_alpha, steps=args.steps)
        name = "edits.json" if (args.edit_preset, args.edit_alpha) == ("fast", 1.0) else \
            f"edits_{args.edit_preset}_alpha{args.edit_alpha:g}.json"
        (args.out / name).write_text(json.dumps(res, indent=1))
        print(json.dumps(res["summary"], indent=1))
    if args.frontier or args.only_frontier:
        run_frontier_study(model, ev, cfg, args)
    if args.only_edits or args.only_frontier:
        return
    extra, sections = {}, {"paper": default_methods(model)}
    if not args.no_beyond:
        joint = _try_load(args.joint)
        if joint is not None:
            extra["joint"] = joint
        beyond = beyond_two_methods(model, joint)
        if beyond:
            sections["beyond two modalities"] = beyond
    seconds = {k: stage_seconds_of(src) for k, src in (("main", args.model), ("joint", args.joint))}
    previous = None
    if args.only:
        known = {m.name for ms in sections.values() for m in ms}
        unknown = sorted(set(args.only) - known)
        if unknown:
            ap.error(f"unknown rows {unknown}; rows are: {', '.join(sorted(known))}")
        if (args.out / "results.json").exists():
            previous = json.loads((args.out / "results.json").read_text())
        cfg.sampler_study = False
        cfg.denoising_study = False
    run_sections = {t: [m for m in ms if not args.only or m.name in args.only] for t, ms in sections.items()}
    t0 = time.time()
    report, gallery = evaluate(model, ev, cfg, sections={t: ms for t, ms in run_sections.items() if ms},
                               extra_models=extra, stage_seconds=seconds)
    report.config["wall_seconds"] = round(time.time() - t0, 1)
    if previous is not None:
        report = merge_reports(previous, report, sections)
        if (args.out / "gallery.npz").exists():
            with np.load(args.out / "gallery.npz") as old:
                gallery = {k: old[k] for k in old.files} | gallery
        order = [n for names in report.sections.values() for n in names]
        gallery = {k: gallery[k] for k in order if k in gallery}
    files = write_outputs(report, gallery, args.out, held_out_pairs(8, model.config.image_size))
    print(markdown(report))
    print("wrote " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()
