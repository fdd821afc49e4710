"""Recipes: the shipped files, the official numbers, overrides and their errors."""
import pytest

from collab.train.recipe import Recipe, RecipeError, load_recipe


def test_the_demo_file_holds_the_demo_numbers():
    assert load_recipe("demo") == Recipe()


def test_official_recipes_carry_the_release_hyper_parameters():
    for name, size, vae_batch in (("official_256", 256, 8), ("official_512", 512, 2)):
        r = load_recipe(name)
        assert (r.model, r.size, r.test_size, r.data_source) == (name, size, 3000, "layout")
        # base lr 2e-6 scaled by batch x GPUs x accumulation (main.py), batch 8 per GPU, no EMA
        assert (r.ldm.lr, r.ldm.batch_size, r.ldm.scale_lr, r.ldm.ema_decay) == (2e-6, 8, True, 0.0)
        assert (r.diffusers.lr, r.diffusers.batch_size, r.diffusers.steps) == (2e-6, 8, 187_000)
        assert (r.vae.lr, r.vae.batch_size, r.vae.accumulate, r.vae.betas) == (4.5e-6, vae_batch, 2, (0.5, 0.9))
        assert r.ldm.grad_clip == r.diffusers.grad_clip == 0.0


def test_overrides_are_typed_and_errors_name_the_key():
    r = load_recipe("demo", ["ldm.lr=1e-4", "vae.crop=32", "diffusers.p2_gamma=1", "data.num_images=100",
                             "ldm.scale_lr=true", "seed=3"])
    assert (r.ldm.lr, r.vae_crop, r.diffuser_p2_gamma, r.num_images, r.ldm.scale_lr, r.seed) == \
        (1e-4, 32, 1.0, 100, True, 3)
    assert r.vae == Recipe().vae  # nothing else moved
    with pytest.raises(RecipeError, match="unknown recipe key 'ldm.lrate'; a ldm stage has .*lr"):
        load_recipe("demo", ["ldm.lrate=1"])
    with pytest.raises(RecipeError, match="ldm.steps: '2.5' is not a valid int"):
        load_recipe("demo", ["ldm.steps=2.5"])
    with pytest.raises(RecipeError, match="schedule 'linear' is not one of constant, cosine"):
        load_recipe("demo", ["evaluator.schedule=linear"])
    with pytest.raises(RecipeError, match="data.source 'web' is not one of world, layout"):
        load_recipe("demo", ["data.source=web"])
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_recipe("demo", ["ldm.lr"])


def test_a_recipe_file_round_trips(tmp_path):
    import yaml

    r = load_recipe("official_512", ["ldm.steps=10"])
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(r.to_yaml_dict()))
    assert load_recipe(path) == r
    path.write_text("- a list")
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        load_recipe(path)
