import numpy as np
import torch

from collab.classes import NUM_CLASSES
from collab.influence import (REGIONS, RegionAccumulator, boundary_mask, downsample_labels, layout_first_score,
                              region_influence)
from collab.pipeline import CollabStep


def test_regions_partition_the_classes():
    members = sorted(i for idx in REGIONS.values() for i in idx)
    assert members == list(range(NUM_CLASSES))


def test_downsample_and_boundary():
    labels = np.zeros((8, 8), np.uint8)
    labels[:, 4:] = 1
    small = downsample_labels(labels, 4)
    assert small.tolist() == [[0, 0, 1, 1]] * 4
    edge = boundary_mask(small)
    assert edge[:, 1].all() and edge[:, 2].all() and not edge[:, 0].any() and not edge[:, 3].any()


def test_region_influence_means_and_absent_regions():
    labels = np.zeros((4, 4), np.uint8)
    labels[:2] = 1  # top half skin, bottom half background
    maps = np.zeros((2, 4, 4))
    maps[0, :2] = 1.0  # step 0: weight 1 on skin only
    maps[1] = 0.5
    r = region_influence(maps, labels, [999, 0])
    col = {n: r.mean[:, i] for i, n in enumerate(r.regions)}
    assert col["skin"].tolist() == [1.0, 0.5] and col["background"].tolist() == [0.0, 0.5]
    assert np.isnan(col["hair & hat"]).all()
    assert col["boundaries"][0] == 0.5  # rows 1 and 2 are edges: half skin, half background


def test_layout_first_score():
    t = [999, 500, 0]
    assert layout_first_score(t, [0.9, 0.6, 0.2]) > 0.95
    assert layout_first_score(t, [0.2, 0.6, 0.9]) < -0.95
    assert layout_first_score(t, [0.5, 0.5, 0.5]) == 0.0


def test_accumulator_matches_region_influence_over_batches():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (3, 16, 16)).astype(np.uint8)
    maps = torch.from_numpy(rng.random((3, 2, 4, 4))).float()  # [B, steps, h, w]
    acc = RegionAccumulator()
    for batch in ([0, 1], [2]):  # two generate calls
        acc.labels = labels[batch]
        for k, t in enumerate([999, 0]):
            w = maps[batch, k][:, None]
            acc(CollabStep(k, 2, t, torch.zeros(len(batch), 3, 4, 4), None, None, {"mask": w, "text": 1 - w}))
    res = acc.result("mask")
    # pixel-weighted mean over all three images = what region_influence gives on the concatenation
    big_labels = np.concatenate([downsample_labels(l, 4) for l in labels], axis=1)
    big_maps = np.concatenate([maps[i].numpy() for i in range(3)], axis=2)
    ref = region_influence(big_maps, big_labels, [999, 0], with_boundary=False)
    k = len(REGIONS)
    assert np.allclose(np.nan_to_num(res.mean[:, :k], nan=-1), np.nan_to_num(ref.mean, nan=-1))
    assert np.allclose(acc.result("text").mean[:, :k], 1 - res.mean[:, :k], equal_nan=True)
