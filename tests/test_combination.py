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
    got = comb.OfficialReweighting(layout=(True, False))(w, t)
    decay = (math.cos((1 - t / 1000) * math.pi) + 1) / 2
    w_mask = w[0] * decay
    w_text = 1 - w_mask
    w_mask = 2 * w_mask
    total = w_mask + w_text
    assert torch.allclose(got[0], w_mask / total, atol=1e-6)
    assert torch.allclose(got[1], w_text / total, atol=1e-6)


def test_official_rule_generalises_to_three_modalities():
    w = comb.softmax_influence(torch.randn(3, 2, 1, 4, 4))
    got = comb.OfficialReweighting(layout=(True, False, False))(w, 300)
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
