"""Pictures of what sampling did: image grids, influence-map heatmaps, per-step recordings.

numpy + PIL only (no matplotlib), so the CLI and the app share them cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from collab.pipeline import CollabStep

# Anchor colours of a perceptually ordered dark-blue -> teal -> yellow map (our own, viridis-like).
_ANCHORS = np.array([[48, 18, 59], [40, 90, 160], [32, 150, 140], [110, 200, 90], [250, 230, 40]], np.float32)


def heatmap(values: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """[H, W] floats -> [H, W, 3] uint8 colours."""
    x = np.clip((np.asarray(values, np.float32) - vmin) / max(vmax - vmin, 1e-8), 0, 1) * (len(_ANCHORS) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (x - lo)[..., None]
    return (_ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac).astype(np.uint8)


def grid(images: Sequence[np.ndarray], ncols: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile equally sized [H, W, 3] uint8 images row by row."""
    if not images:
        raise ValueError("no images to tile")
    h, w = images[0].shape[:2]
    nrows = (len(images) + ncols - 1) // ncols
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), fill, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return out


def upscale(image: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize to [size, size] (influence maps are latent-sized)."""
    mode = "RGB" if image.ndim == 3 else "L"
    return np.asarray(Image.fromarray(image, mode).resize((size, size), Image.NEAREST))


def label(image: np.ndarray, text: str) -> np.ndarray:
    """Write a short caption on a dark strip above the image."""
    strip = Image.new("RGB", (image.shape[1], 12), (20, 20, 20))
    ImageDraw.Draw(strip).text((2, 0), text[: image.shape[1] // 6], fill=(235, 235, 235))
    return np.concatenate([np.asarray(strip), image], axis=0)


@dataclass
class StepRecorder:
    """A sampling callback that keeps, per step, the influence maps and (optionally) latents of one
    sample of the batch, on the CPU. Only what is asked for is kept."""

    sample: int = 0
    keep_latents: bool = False
    timesteps: list[int] = field(default_factory=list)
    influence: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # name -> [h, w] per step
    x_t: list[torch.Tensor] = field(default_factory=list)
    pred_x0: list[torch.Tensor] = field(default_factory=list)

    def __call__(self, step: CollabStep) -> None:
        self.timesteps.append(step.t)
        for name, w in step.influence.items():
            self.influence.setdefault(name, []).append(w[self.sample, 0].float().cpu().clone())
        if self.keep_latents:
            self.x_t.append(step.x_t[self.sample].float().cpu().clone())
            self.pred_x0.append(step.pred_x0[self.sample].float().cpu().clone())

    def influence_array(self, name: str) -> np.ndarray:
        """[steps, h, w] weights of one modality."""
        return torch.stack(self.influence[name]).numpy()


def influence_grid(recorder: StepRecorder, size: int = 64, max_steps: int = 10) -> np.ndarray:
    """Rows = modalities, columns = evenly chosen steps; each cell a heatmap of that step's weights."""
    names = list(recorder.influence)
    if not names:
        raise ValueError("no influence maps were recorded (a single modality has none)")
    n = len(recorder.timesteps)
    cols = sorted(set(np.linspace(0, n - 1, min(max_steps, n)).round().astype(int).tolist()))
    cells = []
    for name in names:
        maps = recorder.influence_array(name)
        for k in cols:
            cells.append(label(upscale(heatmap(maps[k]), size), f"{name} t={recorder.timesteps[k]}"))
    return grid(cells, ncols=len(cols))
