from dataclasses import replace

import numpy as np
import pytest

from collab.classes import CLASS_INDEX as C
from collab.data.faceworld import BINARY_ATTRIBUTES, render, render_face, sample_attributes


def test_same_seed_same_bytes_and_seeds_differ():
    a, b, c = render(7), render(7), render(8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels) and a.caption == b.caption
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_sizes_and_label_range(size):
    s = render(3, size)
    assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
    assert s.labels.shape == (size, size) and s.labels.max() <= 18
    present = set(np.unique(s.labels))
    assert {C["background"], C["skin"], C["nose"], C["l_eye"], C["r_eye"], C["u_lip"], C["l_lip"]} <= present


def test_sides_follow_celebamask_convention():
    s = render(11)
    cols = np.nonzero(s.labels == C["l_eye"])[1].mean(), np.nonzero(s.labels == C["r_eye"])[1].mean()
    assert cols[0] > cols[1]  # the person's left eye is on the image's right


def _with(seed, **changes):
    rng = np.random.default_rng(seed)
    attrs = replace(sample_attributes(rng), **changes)
    return render_face(attrs, np.random.default_rng(99), 128)


def test_accessories_get_their_classes():
    base = dict(gender="woman", beard=0, hair_style="long")
    for flag, cls in (("eyeglasses", "eye_g"), ("hat", "hat"), ("earrings", "ear_r"), ("necklace", "neck_l")):
        _, on = _with(5, **base, **{flag: True})
        _, off = _with(5, **base, **{flag: False})
        assert (on == C[cls]).sum() > 5 and (off == C[cls]).sum() == 0, flag
    _, bald = _with(5, hair_style="bald", hat=False, gender="man")
    assert (bald == C["hair"]).sum() == 0


def test_beard_and_age_change_pixels_not_labels():
    img0, lab0 = _with(4, gender="man", beard=0, age=2)
    img4, lab4 = _with(4, gender="man", beard=3, age=2)
    assert np.array_equal(lab0, lab4)  # the beard stays "skin", as in CelebA-HQ
    skin = lab0 == C["skin"]
    lower = np.zeros_like(skin)
    lower[70:] = True
    assert np.abs(img0.astype(int) - img4.astype(int))[skin & lower].mean() > 10  # visibly bearded
    young, lab_y = _with(4, gender="woman", beard=0, age=0)
    old, lab_o = _with(4, gender="woman", beard=0, age=5, hair_colour="brown")
    assert np.array_equal(lab_y, lab_o)
    assert np.abs(young.astype(int) - old.astype(int))[lab_y == C["skin"]].mean() > 1


def test_hair_pixels_look_like_hair_not_skin():
    s = render(21)
    if (s.labels == C["hair"]).sum() > 50:
        hair = s.image[s.labels == C["hair"]].mean(0)
        skin = s.image[s.labels == C["skin"]].mean(0)
        assert np.abs(hair - skin).sum() > 20


def test_binary_vector_and_marginals():
    rng = np.random.default_rng(0)
    attrs = [sample_attributes(rng) for _ in range(600)]
    assert all(a.beard == 0 for a in attrs if a.gender == "woman")
    men = [a for a in attrs if a.gender == "man"]
    assert 0.4 < len(men) / len(attrs) < 0.6
    assert {a.beard for a in men} == {0, 1, 2, 3, 4} and {a.age for a in attrs} == set(range(6))
    v = attrs[0].to_binary_vector()
    assert v.shape == (len(BINARY_ATTRIBUTES),) and set(np.unique(v)) <= {0.0, 1.0}
