import math

import torch

from collab import combination as comb


def test_softmax_influence_sums_to_one_per_pixel():
    w = comb.softmax_influence(torch.randn(3, 2, 1, 4, 4) * 5)
    assert torch.allclose(w.sum(0), torch.ones(2, 1, 4, 4))


def test_cosine_decay_endpoints():
    assert float(comb.cosine_decay(1000)) == 1.0
    assert abs(float(comb.cosine_decay(0))) < 1e-7
    assert abs(float(comb.cosine_decay(500)) - 0.5) < 1e-6


def test_official_rule_for_mask_and_text_is_the_hand_formula():
    logits = torch.randn(2, 1, 1, 4, 4)
    w = comb.softmax_influence(logits)
    t = 601
    got = comb.OfficialReweighting(leads_early=(True, False))(w, t)
    decay = (math.cos((1 - t / 1000) * math.pi) + 1) / 2
    w_mask = w[0] * decay
    w_text = 1 - w_mask
    w_mask = 2 * w_mask
    total = w_mask + w_text
    assert torch.allclose(got[0], w_mask / total, atol=1e-6)
    assert torch.allclose(got[1], w_text / total, atol=1e-6)


def test_official_rule_generalises_to_three_modalities():
    w = comb.softmax_influence(torch.randn(3, 2, 1, 4, 4))
    got = comb.OfficialReweighting(leads_early=(True, False, False))(w, 300)
    assert torch.allclose(got.sum(0), torch.ones(2, 1, 4, 4), atol=1e-6)
    # the non-layout modalities keep their relative proportions
    assert torch.allclose(got[1] / got[2], w[1] / w[2], rtol=1e-4)


def test_ablation_and_baseline_weights():
    w = comb.softmax_influence(torch.randn(2, 1, 1, 4, 4))
    flat = comb.spatial_mean(w)
    assert torch.allclose(flat[0, 0, 0], w[0].mean().expand(4, 4))
    assert torch.allclose(flat.sum(0), torch.ones(1, 1, 4, 4))
    u = comb.uniform_weights(4, torch.zeros(2, 3, 5, 5))
    assert u.shape == (4, 2, 1, 5, 5) and torch.all(u == 0.25)


def test_combine_is_the_weighted_sum():
    eps = torch.randn(2, 1, 3, 4, 4)
    w = torch.stack([torch.full((1, 1, 4, 4), 0.25), torch.full((1, 1, 4, 4), 0.75)])
    assert torch.allclose(comb.combine(eps, w), 0.25 * eps[0] + 0.75 * eps[1])


def test_validation_names_the_choices():
    import pytest

    with pytest.raises(ValueError, match="paper, official"):
        comb.validate_rule("magic")
    with pytest.raises(ValueError, match="composable"):
        comb.validate_mode("magic")


# ---------------------------------------------------------------- strengths and windows


def _weights(m=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return comb.softmax_influence(torch.randn(m, 2, 1, 4, 4, generator=g) * 2)


def test_default_handles_change_nothing_bit_for_bit():
    s = comb.make_steering(("mask", "text"), None, None, 5, (4, 4))
    assert all(s.factors(i) is None for i in range(5))
    w = _weights()
    same = comb.steer(w, torch.ones(2, 1, 1, 4, 4))  # explicit factors of 1: untouched, not renormalised
    assert torch.equal(same, w)
    assert s.record() == ({"mask": 1.0, "text": 1.0}, {"mask": (0.0, 1.0), "text": (0.0, 1.0)})


def test_strength_raises_that_modalitys_share_and_sums_to_one():
    w = _weights()
    prev = w[1]
    for s in (1.5, 4.0, 16.0):
        steering = comb.make_steering(("mask", "text"), {"text": s}, None, 3, (4, 4))
        out = comb.steer(w, steering.factors(0))
        assert torch.all(out[1] > prev) and torch.all(out[0] < w[0])
        assert torch.allclose(out.sum(0), torch.ones(2, 1, 4, 4), atol=1e-6)
        prev = out[1]
    low = comb.steer(w, comb.make_steering(("mask", "text"), {"text": 0.25}, None, 3, (4, 4)).factors(0))
    assert torch.all(low[1] < w[1])


def test_strength_under_the_paper_rule_adds_log_s_to_the_logit():
    logits = torch.randn(3, 1, 1, 4, 4)
    steering = comb.make_steering(("a", "b", "c"), {"b": 3.0, "c": 0.5}, None, 2, (4, 4))
    got = comb.steer(comb.softmax_influence(logits), steering.factors(1))
    shifted = logits + torch.tensor([0.0, math.log(3.0), math.log(0.5)]).view(3, 1, 1, 1, 1)
    assert torch.allclose(got, comb.softmax_influence(shifted), atol=1e-6)


def test_fixed_weights_from_strengths_on_the_uniform_mix():
    """Composable at text weight w is the uniform mix with text strength w / (1 - w)."""
    u = comb.uniform_weights(2, torch.zeros(1, 3, 4, 4))
    for target in (0.1, 0.5, 0.9):
        s = comb.make_steering(("mask", "text"), {"text": target / (1 - target)}, None, 1, (4, 4))
        out = comb.steer(u, s.factors(0))
        assert torch.allclose(out[1], torch.full_like(out[1], target), atol=1e-6)


def test_outside_its_window_a_weight_is_exactly_zero():
    steps = 11
    s = comb.make_steering(("mask", "text", "attributes"), None, {"mask": (0, 0.6), "text": (0.3, 1)}, steps, (4, 4))
    w = _weights(3)
    for i in range(steps):
        f = comb.step_fraction(i, steps)
        out = comb.steer(w, s.factors(i))
        assert torch.allclose(out.sum(0), torch.ones(2, 1, 4, 4), atol=1e-6)
        assert (bool((out[0] == 0).all()) == (f > 0.6 + 1e-9)) and (bool((out[1] == 0).all()) == (f < 0.3 - 1e-9))
        assert bool((out[2] > 0).all())  # no window: always there
    # inside both windows the two keep their learned ratio
    mid = comb.steer(w, s.factors(4))
    assert torch.allclose(mid[0] / mid[1], w[0] / w[1], rtol=1e-5)


def test_a_painted_map_changes_weights_only_where_painted():
    w = _weights()
    paint = torch.ones(4, 4)
    paint[1:3, 0:2] = 5.0
    s = comb.make_steering(("mask", "text"), {"text": paint}, None, 1, (4, 4))
    out = comb.steer(w, s.factors(0))
    region = paint > 1
    assert torch.equal(out[..., ~region], w[..., ~region])
    assert torch.all(out[1][..., region] > w[1][..., region])


def test_an_image_resolution_map_is_averaged_to_the_latent_grid():
    paint = torch.ones(16, 16)
    paint[:8, :8] = 3.0  # exactly the top-left latent quadrant of a 4x4 grid
    paint[8:10, 12:14] = 9.0  # a quarter of one latent cell
    s = comb.make_steering(("mask", "text"), {"mask": paint.numpy()}, None, 1, (4, 4))
    grid = s.strength["mask"]
    assert grid.shape == (4, 4) and torch.all(grid[:2, :2] == 3.0) and float(grid[2, 3]) == 3.0
    assert int((grid == 1.0).sum()) == 16 - 4 - 1
    assert s.record()[0]["mask"].startswith("map 4x4")


def test_zero_learned_weights_leave_the_decision_to_the_factors():
    w = torch.zeros(2, 1, 1, 2, 2)
    w[1] = 1.0
    factors = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1, 1)  # text out of its window, mask weight 0
    out = comb.steer(w, factors)
    assert torch.equal(out[0], torch.ones(1, 1, 2, 2)) and torch.equal(out[1], torch.zeros(1, 1, 2, 2))


def test_handles_are_validated_with_clear_messages():
    import pytest

    names = ("mask", "text")
    with pytest.raises(ValueError, match="'sketch', not a modality of this run .*mask, text"):
        comb.make_steering(names, {"sketch": 2.0}, None, 3, (4, 4))
    with pytest.raises(ValueError, match="window given for 'sketch'"):
        comb.make_steering(names, None, {"sketch": (0, 1)}, 3, (4, 4))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="strength of 'text' must be finite and >= 0"):
            comb.make_steering(names, {"text": bad}, None, 3, (4, 4))
    with pytest.raises(ValueError, match="min -1"):
        comb.make_steering(names, {"text": -torch.ones(4, 4)}, None, 3, (4, 4))
    with pytest.raises(ValueError, match=r"shape \(2, 4, 4\)"):
        comb.make_steering(names, {"text": torch.ones(2, 4, 4)}, None, 3, (4, 4))
    with pytest.raises(ValueError, match="number >= 0"):
        comb.make_steering(names, {"text": "strong"}, None, 3, (4, 4))
    with pytest.raises(ValueError, match="0 <= start <= end <= 1"):
        comb.make_steering(names, None, {"mask": (0.7, 0.2)}, 3, (4, 4))
    with pytest.raises(ValueError, match="pair"):
        comb.make_steering(names, None, {"mask": 0.5}, 3, (4, 4))
    with pytest.raises(ValueError, match="no modality takes part in step 3 of 5"):
        comb.make_steering(names, None, {"mask": (0, 0.4), "text": (0, 0.4)}, 5, (4, 4))
    with pytest.raises(ValueError, match="strength 0 at some pixels"):
        comb.make_steering(names, {"mask": 0.0}, {"text": (0.5, 1)}, 5, (4, 4))
    # strength 0 is allowed where another modality takes part
    assert comb.make_steering(names, {"mask": 0.0}, None, 5, (4, 4)).factors(0) is not None
