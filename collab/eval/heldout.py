"""The held-out evaluation set: face-world renders the demo model never saw, and their conditions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collab.evaluator import attribute_targets
from collab.model import CollaborativeModel


HELDOUT_WORLD = 1  # the demo model trained on world seed 0


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
