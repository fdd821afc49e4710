"""What is measured on a set of samples: the evaluator's parser and classifier against the
conditions, and spread statistics (diversity, influence per region and timestep)."""
from __future__ import annotations

import numpy as np

from collab.eval.heldout import HeldOut, conditions_for
from collab.eval.methods import Method
from collab.eval.sampling import EvalConfig
from collab.evaluator import CAPTION_HEADS, Evaluator, binary_attributes, confusion, diversity, miou, pixel_accuracy
from collab.influence import RegionAccumulator, layout_first_score
from collab.pipeline import generate


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
