import numpy as np
import pytest
import torch

from collab.pipeline import CollaborativeDenoiser, generate
from tests.conftest import tiny_config, tiny_model

MASK = np.zeros((32, 32), np.uint8)
MASK[8:24, 8:24] = 1
MASK[12:14, 10:13] = 4
CONDS = {"text": "this man has beard of medium length.", "mask": MASK}


def contexts(model, batch=1):
    return {n: model.encode_condition(n, [CONDS[n]]).expand(batch, -1, -1) for n in model.names}


def test_same_seed_same_image_bit_for_bit(model):
    a = generate(model, CONDS, steps=4, seed=3)
    b = generate(model, CONDS, steps=4, seed=3)
    c = generate(model, CONDS, steps=4, seed=4)
    assert torch.equal(a.latents, b.latents) and np.array_equal(a.images, b.images)
    assert not torch.equal(a.latents, c.latents)
    assert a.images.shape == (1, 16, 16, 3) and a.images.dtype == np.uint8


def test_influence_weights_sum_to_one_and_are_recorded(model):
    seen = []
    result = generate(model, CONDS, steps=3, seed=0, batch_size=2, callback=seen.append, rule="official")
    assert [s.index for s in seen] == [0, 1, 2] and seen[0].num_steps == 3
    for s in seen:
        total = sum(s.influence.values())
        assert total.shape == (2, 1, 8, 8)
        assert torch.allclose(total, torch.ones_like(total), atol=1e-5)
    assert result.settings.rule == "official" and result.settings.mode == "collaborative"
    assert "rule=official" in result.settings.describe()


def test_predict_returns_the_weights_it_used_and_keeps_none(model):
    den = CollaborativeDenoiser(model, contexts(model), "collaborative", "official")
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([500])
    out = den.predict(x, t)
    assert torch.equal(out.weights, den.weights(x, t)) and torch.equal(out.eps, den(x, t))
    assert torch.allclose(out.weights.sum(0), torch.ones(1, 1, 8, 8), atol=1e-6)
    assert not hasattr(den, "last_weights")  # no side channel: the sampler hands the weights on


def test_the_recorded_seed_reproduces_the_run(model):
    g = torch.Generator().manual_seed(1234)
    a = generate(model, CONDS, steps=2, generator=g)
    assert a.settings.seed == 1234
    fresh = generate(model, CONDS, steps=2, seed=None)
    assert isinstance(fresh.settings.seed, int)
    again = generate(model, CONDS, steps=2, seed=fresh.settings.seed)
    assert torch.equal(fresh.latents, again.latents)


def test_every_mode_and_sampler_comes_from_one_table(model):
    from collab.combination import MODES
    from collab.pipeline import MODE_WEIGHTS
    from collab.samplers import SAMPLERS

    assert tuple(MODE_WEIGHTS) == MODES
    for name, sampler in SAMPLERS.items():
        r = generate(model, CONDS, steps=2, seed=0, sampler=name, eta=1.0)
        assert r.settings.sampler == name and r.settings.eta == (1.0 if sampler.stochastic else 0.0)


def test_single_modality_is_its_collaborator_alone(model):
    ctx = contexts(model)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([700])
    den = CollaborativeDenoiser(model, {"text": ctx["text"]}, "collaborative", "paper")
    assert torch.allclose(den(x, t), model.collaborators["text"](x, t, ctx["text"]))
    r = generate(model, {"mask": MASK}, steps=2, seed=0)
    assert r.settings.modalities == ("mask",)


def test_composable_is_the_equal_average(model):
    ctx = contexts(model)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([300])
    den = CollaborativeDenoiser(model, ctx, "composable", "paper")
    expected = sum(model.collaborators[n](x, t, ctx[n]) for n in ctx) / 2
    assert torch.allclose(den(x, t), expected, atol=1e-6)


def test_ablations(model):
    ctx = contexts(model)
    x = torch.randn(1, 3, 8, 8)
    flat = CollaborativeDenoiser(model, ctx, "no_spatial", "paper").weights(x, torch.tensor([900]))
    assert torch.allclose(flat[0], flat[0, :, :, :1, :1].expand_as(flat[0]))
    frozen = CollaborativeDenoiser(model, ctx, "no_temporal", "paper")
    w1 = frozen.weights(x, torch.tensor([900]))
    w2 = frozen.weights(torch.randn(1, 3, 8, 8), torch.tensor([100]))
    assert torch.equal(w1, w2)
    live = CollaborativeDenoiser(model, ctx, "collaborative", "paper")
    assert not torch.equal(live.weights(x, torch.tensor([900])), live.weights(x, torch.tensor([100])))


def test_a_third_modality_is_data_not_code():
    cfg = tiny_config({"mask": "mask", "text": "text", "sketch": "mask"}, layout=("mask", "sketch"))
    model = tiny_model(cfg)
    sketch = np.zeros((16, 16), np.uint8)
    sketch[4:12, 4:12] = 2
    seen = []
    r = generate(model, {**CONDS, "sketch": sketch}, steps=2, seed=0, callback=seen.append, rule="official")
    assert r.settings.modalities == ("mask", "text", "sketch")
    assert set(seen[0].influence) == {"mask", "text", "sketch"}
    assert torch.allclose(sum(seen[-1].influence.values()), torch.ones(1, 1, 8, 8), atol=1e-5)


def test_batch_of_different_conditions(model):
    mask2 = np.full((32, 32), 13, np.uint8)
    r = generate(model, {"mask": [MASK, mask2], "text": "a woman"}, steps=2, batch_size=2, seed=0)
    assert r.images.shape[0] == 2


def test_dpm_solver_and_validation(model):
    r = generate(model, CONDS, steps=3, sampler="dpmpp_2m", seed=1)
    assert np.isfinite(r.latents.numpy()).all() and r.settings.eta == 0.0
    with pytest.raises(ValueError, match="ddim, dpmpp_2m"):
        generate(model, CONDS, sampler="euler")
    with pytest.raises(ValueError, match="unknown modalities"):
        generate(model, {"sketch": MASK})
    with pytest.raises(ValueError, match="at least one"):
        generate(model, {})
    with pytest.raises(ValueError, match="empty"):
        generate(model, {"text": "   "})


def test_collaborative_needs_diffusers():
    model = tiny_model(tiny_config(diffusers=False))
    with pytest.raises(ValueError, match="dynamic diffusers"):
        generate(model, CONDS, steps=2)
    assert generate(model, CONDS, steps=2, mode="composable").images.shape == (1, 16, 16, 3)


def test_bfloat16_collaborators_run_and_stay_close(model):
    ref = generate(model, CONDS, steps=3, seed=0, eta=0.0)
    model.collaborators.to(torch.bfloat16)
    model.diffusers.to(torch.bfloat16)
    low = generate(model, CONDS, steps=3, seed=0, eta=0.0)
    assert low.settings.dtype == "bfloat16"
    assert float((low.latents - ref.latents).abs().max()) < 0.1 * float(ref.latents.abs().max())


def test_weight_only_precision_and_channels_last(model):
    ref = generate(model, CONDS, steps=3, seed=0, eta=0.0)
    model.use_channels_last()
    cl = generate(model, CONDS, steps=3, seed=0, eta=0.0)
    assert torch.allclose(cl.latents, ref.latents, atol=1e-5)
    model.set_precision(torch.bfloat16, compute_dtype=torch.float32)
    assert model.collaborators["text"].out[2].weight.dtype == torch.bfloat16
    assert model.collaborators["text"].dtype == torch.float32  # activations stay float32
    low = generate(model, CONDS, steps=3, seed=0, eta=0.0)
    err = float((low.latents - ref.latents).abs().max() / ref.latents.abs().max())
    assert 0 < err < 0.05


def test_optimize_for_keeps_the_samples_and_follows_weight_changes(model):
    ref = generate(model, CONDS, steps=3, seed=0)
    model.optimize_for("cpu")
    fast = generate(model, CONDS, steps=3, seed=0)
    assert torch.allclose(fast.latents, ref.latents, atol=1e-5)
    with torch.no_grad():
        for p in model.collaborators["text"].parameters():
            p.mul_(0.5)
    changed = generate(model, CONDS, steps=3, seed=0)
    assert not torch.allclose(changed.latents, ref.latents, atol=1e-3)
    model.use_channels_last(False)
    assert torch.allclose(generate(model, CONDS, steps=3, seed=0).latents, changed.latents, atol=1e-5)


# ---------------------------------------------------------------- strengths, windows, painted maps


def _maps(model, **kw):
    seen = []
    r = generate(model, CONDS, steps=5, seed=2, callback=seen.append, **kw)
    return r, seen


@pytest.mark.parametrize("mode", ["collaborative", "composable", "no_temporal"])
@pytest.mark.parametrize("rule", ["paper", "official"])
def test_strength_one_and_full_windows_are_todays_run_bit_for_bit(model, mode, rule):
    ref = generate(model, CONDS, steps=4, seed=5, mode=mode, rule=rule)
    same = generate(model, CONDS, steps=4, seed=5, mode=mode, rule=rule, strength={"text": 1, "mask": 1.0},
                    window={"mask": (0, 1), "text": (0.0, 1.0)})
    assert torch.equal(ref.latents, same.latents) and np.array_equal(ref.images, same.images)
    assert same.settings.strength == {"mask": 1.0, "text": 1.0}
    assert same.settings.describe() == ref.settings.describe()


def test_raising_text_strength_raises_its_share(model):
    shares = []
    for s in (0.25, 1.0, 4.0, 16.0):
        r, seen = _maps(model, strength={"text": s}, rule="official")
        shares.append(float(seen[0].influence["text"].mean()))
        assert r.settings.strength["text"] == s
    assert shares == sorted(shares) and shares[-1] > shares[0] + 0.1
    r, _ = _maps(model, strength={"text": 4.0})
    assert "strength text=4" in r.settings.describe()


def test_outside_its_window_the_recorded_weight_is_exactly_zero(model):
    r, seen = _maps(model, window={"mask": (0, 0.5), "text": (0.25, 1)})
    for s in seen:
        f = s.index / (s.num_steps - 1)
        assert bool((s.influence["mask"] == 0).all()) == (f > 0.5)
        assert bool((s.influence["text"] == 0).all()) == (f < 0.25)
        assert torch.allclose(sum(s.influence.values()), torch.ones(1, 1, 8, 8), atol=1e-6)
    assert r.settings.window == {"mask": (0.0, 0.5), "text": (0.25, 1.0)}
    assert "window mask=0:0.5, text=0.25:1" in r.settings.describe()


def test_a_painted_map_changes_the_first_steps_weights_only_where_painted(model):
    paint = np.ones((16, 16), np.float32)  # image resolution; the latent grid is 8x8
    paint[4:8, 6:12] = 6.0
    _, plain = _maps(model)
    r, painted = _maps(model, strength={"text": paint})
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[2:4, 3:6] = True
    a, b = plain[0].influence["text"][0, 0], painted[0].influence["text"][0, 0]
    assert torch.equal(a[~region], b[~region]) and torch.all(b[region] > a[region])
    assert r.settings.strength["text"].startswith("map 8x8")


def test_composable_with_strength_is_a_fixed_weight(model):
    ctx = contexts(model)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([300])
    from collab.combination import make_steering

    steering = make_steering(("mask", "text"), {"text": 0.3 / 0.7}, None, 1, (8, 8))
    den = CollaborativeDenoiser(model, ctx, "composable", "paper", steering=steering, step_of={300: 0})
    eps = {n: model.collaborators[n](x, t, ctx[n]) for n in ctx}
    assert torch.allclose(den(x, t), 0.7 * eps["mask"] + 0.3 * eps["text"], atol=1e-5)


def test_a_single_modality_keeps_weight_one_under_any_strength(model):
    ref = generate(model, {"mask": MASK}, steps=3, seed=0)
    strong = generate(model, {"mask": MASK}, steps=3, seed=0, strength={"mask": 7.0})
    assert torch.equal(ref.latents, strong.latents)


def test_handle_errors_name_the_problem(model):
    with pytest.raises(ValueError, match="'text', not a modality of this run"):
        generate(model, {"mask": MASK}, steps=2, strength={"text": 2.0})
    with pytest.raises(ValueError, match="'sketch', not a modality"):
        generate(model, CONDS, steps=2, window={"sketch": (0, 1)})
    with pytest.raises(ValueError, match="must be finite and >= 0, got -2"):
        generate(model, CONDS, steps=2, strength={"mask": -2})
    with pytest.raises(ValueError, match="no modality takes part in step 2 of 3"):
        generate(model, CONDS, steps=3, window={"mask": (0, 0.2), "text": (0.8, 1)})



def test_a_models_default_strength_applies_to_collaborative_runs_under_the_callers():
    from dataclasses import replace

    from collab.config import check_config, config_from_dict, config_to_dict

    plain = tiny_model()
    cfg = tiny_config()
    cfg = replace(cfg, modalities=tuple(replace(m, strength=2.5) if m.name == "text" else m for m in cfg.modalities))
    strong = tiny_model(cfg)  # same seed, same weights: only the config's default differs
    a = generate(strong, CONDS, steps=3, seed=1)
    assert torch.equal(a.latents, generate(plain, CONDS, steps=3, seed=1, strength={"text": 2.5}).latents)
    assert a.settings.strength["text"] == 2.5 and "strength text=2.5" in a.settings.describe()
    mine = generate(strong, CONDS, steps=3, seed=1, strength={"text": 1.0})  # the caller's value wins
    assert torch.equal(mine.latents, generate(plain, CONDS, steps=3, seed=1).latents)
    for mode in ("composable", "no_spatial"):  # other modes are the learned or fixed mix as it is
        assert torch.equal(generate(strong, CONDS, steps=3, seed=1, mode=mode).latents,
                           generate(plain, CONDS, steps=3, seed=1, mode=mode).latents)
    assert config_from_dict(config_to_dict(cfg)).modality("text").strength == 2.5
    for bad in (0.0, -1.0, float("nan"), 17.0):
        with pytest.raises(ValueError, match="strength"):
            check_config(replace(cfg, modalities=tuple(replace(m, strength=bad) for m in cfg.modalities)))
