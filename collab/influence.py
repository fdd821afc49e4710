"""Statistics of the influence maps: where (face region) and when (timestep) each modality leads.

The paper's story is "layout first, details later": the mask branch should hold most weight at large
t, especially on part boundaries, and hand over to the text branch as sampling proceeds. These
functions turn recorded maps ([steps, h, w] per modality) into numbers and plots can be made of.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collab.classes import CLASS_NAMES

# Coarse regions people recognise in a plot; every class index belongs to exactly one.
REGIONS: dict[str, tuple[int, ...]] = {
    "background": (0,),
    "skin": (1,),
    "eyes & brows": (3, 4, 5, 6, 7),   # eyeglasses, eyes, brows
    "nose": (2,),
    "mouth & lips": (10, 11, 12),
    "ears": (8, 9, 15),                # ears, earrings
    "hair & hat": (13, 14),
    "neck & cloth": (16, 17, 18),      # necklace, neck, cloth
}


def downsample_labels(labels: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """[H, W] label map -> [size, size] (or [h, w]) by nearest sampling at cell centres (what the maps see)."""
    labels = np.asarray(labels)
    h, w = labels.shape
    sh, sw = (size, size) if isinstance(size, int) else size
    ys = ((np.arange(sh) + 0.5) * h / sh).astype(int).clip(0, h - 1)
    xs = ((np.arange(sw) + 0.5) * w / sw).astype(int).clip(0, w - 1)
    return labels[ys][:, xs]


def boundary_mask(labels: np.ndarray) -> np.ndarray:
    """Cells whose 4-neighbourhood holds another label: the contours of the layout."""
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return edge


@dataclass
class RegionInfluence:
    """Mean weight of one modality per region (columns) and step (rows); NaN where a region is absent."""

    timesteps: np.ndarray  # [steps]
    regions: list[str]
    mean: np.ndarray  # [steps, regions]


def region_influence(maps: np.ndarray, labels: np.ndarray, timesteps, regions: dict | None = None,
                     with_boundary: bool = True) -> RegionInfluence:
    """Average a modality's [steps, h, w] weights inside each face region of a label map.

    `labels` may be at image resolution; it is resampled to the maps' grid. With `with_boundary`,
    two more columns split the face into "boundaries" and "interiors" (cells on / off part edges).
    """
    maps = np.asarray(maps, np.float64)
    if maps.ndim != 3:
        raise ValueError(f"maps must be [steps, h, w], got shape {maps.shape}")
    grid = downsample_labels(labels, maps.shape[-2:])
    regions = REGIONS if regions is None else regions
    masks = {name: np.isin(grid, idx) for name, idx in regions.items()}
    if with_boundary:
        edge = boundary_mask(grid)
        masks["boundaries"], masks["interiors"] = edge, ~edge
    cols = []
    for m in masks.values():
        cols.append(maps[:, m].mean(axis=1) if m.any() else np.full(len(maps), np.nan))
    return RegionInfluence(np.asarray(list(timesteps)), list(masks), np.stack(cols, axis=1))


def layout_first_score(timesteps, share) -> float:
    """Pearson correlation between t and a modality's mean share per step.

    Positive for the mask branch means it leads early (large t) and lets go later; 0 for a
    constant share (reported as 0, not NaN, since "no trend" is the honest reading)."""
    t = np.asarray(list(timesteps), np.float64)
    s = np.asarray(share, np.float64)
    if len(t) != len(s) or len(t) < 2:
        raise ValueError("need one share per timestep and at least two steps")
    if s.std() < 1e-12 or t.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(t, s)[0, 1])


def class_names_present(labels: np.ndarray) -> list[str]:
    return [CLASS_NAMES[i] for i in np.unique(np.asarray(labels)) if 0 <= i < len(CLASS_NAMES)]


class RegionAccumulator:
    """A sampling callback that sums, over a batch and over calls, each modality's weight per
    region and step. Set `labels` ([B, H, W], the batch's layouts) before each `generate` call.

    Memory is [steps, regions] per modality, whatever the number of images."""

    def __init__(self, regions: dict | None = None, with_boundary: bool = True) -> None:
        self.regions = REGIONS if regions is None else regions
        self.with_boundary = with_boundary
        self.labels: np.ndarray | None = None
        self.timesteps: list[int] = []
        self.sums: dict[str, np.ndarray] = {}
        self.counts: np.ndarray | None = None
        self._masks: np.ndarray | None = None  # [B, regions, h, w] of the current batch

    @property
    def names(self) -> list[str]:
        return list(self.regions) + (["boundaries", "interiors"] if self.with_boundary else [])

    def _region_masks(self, size: int) -> np.ndarray:
        out = []
        for lab in self.labels:
            grid = downsample_labels(lab, size)
            ms = [np.isin(grid, idx) for idx in self.regions.values()]
            if self.with_boundary:
                edge = boundary_mask(grid)
                ms += [edge, ~edge]
            out.append(np.stack(ms))
        return np.stack(out).astype(np.float64)

    def __call__(self, step) -> None:
        if not step.influence:
            return
        if self.labels is None:
            raise ValueError("set RegionAccumulator.labels to the batch's label maps before sampling")
        if step.index == 0:
            self._masks = self._region_masks(step.x_t.shape[-1])
            if self.counts is None:
                self.counts = np.zeros((step.num_steps, len(self.names)))
            self.counts += self._masks.sum(axis=(0, 2, 3))[None]
        if len(self.timesteps) < step.num_steps:
            self.timesteps.append(int(step.t))
        for name, w in step.influence.items():
            w = w[:, 0].float().cpu().numpy().astype(np.float64)  # [B, h, w]
            acc = self.sums.setdefault(name, np.zeros((step.num_steps, len(self.names))))
            acc[step.index] += np.einsum("bhw,brhw->r", w, self._masks)

    def result(self, name: str) -> RegionInfluence:
        mean = np.where(self.counts > 0, self.sums[name] / np.maximum(self.counts, 1), np.nan)
        return RegionInfluence(np.asarray(self.timesteps), self.names, mean)


def plot_region_influence(curves: dict[str, RegionInfluence], title: str, notes: dict[str, str] | None = None):
    """One panel per modality: its mean weight in each face region over sampling (t runs from left
    to right as sampling does; dashed: part boundaries vs interiors). Returns a matplotlib Figure;
    the one region plot of the package, the app and the evaluation report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], curves.items()):
        for j, region in enumerate(r.regions):
            if np.isfinite(r.mean[:, j]).all():
                dashed = region in ("boundaries", "interiors")
                ax.plot(r.timesteps, r.mean[:, j], "--" if dashed else "-", lw=2 if dashed else 1.2, label=region)
        ax.set_xlim(max(r.timesteps), min(r.timesteps))
        ax.set_ylim(0, 1)
        ax.set_xlabel("timestep t (sampling runs left to right)")
        ax.set_ylabel(f"mean weight of {name}")
        if notes and name in notes:
            ax.set_title(notes[name])
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig
