"""The real-data path: the official layout through Datasets and DataLoaders (workers, latent cache),
every stage on it, and Algorithm 1 on top of official collaborator checkpoints; the CLI."""
from dataclasses import replace

import pytest
import torch

from collab.config import load_official_config
from collab.train.__main__ import main as cli
from collab.train.data import Batches, LatentCache, LayoutDataset, ResumableSampler
from collab.train.engine import Engine, EngineConfig
from collab.train.recipe import load_recipe
from collab.train.runner import LayoutSource, run_recipe
from collab.train.stages import WarmStart
from tests.conftest import REFERENCE, VOCAB, tiny_config

COMPOSE_YAML = REFERENCE / "compose_tiny_compose.yaml"


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    from collab.data.layout import write_official_layout

    root = tmp_path_factory.mktemp("layout")
    write_official_layout(root, 10, seed=3, size=64)
    return root


def tiny_recipe(root, size):
    r = load_recipe("official_256", [f"data.root={root}", f"data.size={size}", "data.test_size=2", "data.workers=0"])
    small = lambda c: replace(c, steps=2, batch_size=2, save_every=1, log_every=1, sample_every=0, quiet=True,
                              scale_lr=False, lr=1e-4)
    return replace(r, vae=replace(small(r.vae), accumulate=1), decoder=small(r.decoder), ldm=small(r.ldm),
                   diffusers=small(r.diffusers))


def test_sampler_splits_epochs_over_ranks_and_resumes_mid_epoch():
    ranks = [ResumableSampler(10, seed=1, rank=r, world_size=3) for r in range(3)]
    seen = [list(s) for s in ranks]
    assert all(len(s) == 3 for s in seen) and len(set(sum(seen, []))) == 9  # disjoint, tail of 1 dropped
    s = ResumableSampler(10, seed=1)
    whole = list(s)
    s.restore({"epoch": 0, "position": 4})
    assert list(s) == whole[4:]
    s.restore({"epoch": 1, "position": 0})
    assert sorted(s) == list(range(10)) and list(s) != whole  # a fresh permutation per epoch


def test_workers_read_the_same_batches_and_the_cache_is_memory_mapped(layout, tmp_path):
    ds = LayoutDataset(layout, "train", test_size=2, size=32)
    assert len(ds) == 8 and ds[0]["image"].shape == (3, 32, 32) and ds[0]["mask"].shape == (19, 1024)
    plain, workers = Batches(ds, 4, 0, 0, 1, workers=0), Batches(ds, 4, 0, 0, 1, workers=2)
    for _ in range(3):  # crosses an epoch boundary
        a, b = next(plain), next(workers)
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["image"], b["image"])
    from collab.vae import AutoencoderKL

    vae = AutoencoderKL(tiny_config().vae).eval()
    cache = LatentCache.build(tmp_path / "lat.npy", ds, vae.encode, (3, 16, 16), Engine(EngineConfig("cpu")))
    assert isinstance(cache.array, __import__("numpy").memmap) and len(cache) == 8
    mean, std = cache[5]
    with torch.no_grad():
        post = vae.encode(ds[5]["image"][None])
    assert torch.allclose(mean, post.mean[0], atol=2e-3) and torch.allclose(std, post.std[0], atol=2e-3)
    with pytest.raises(ValueError, match="holds 8 images, the layout's train split 9"):
        LayoutDataset(layout, "train", test_size=1, size=32, latents=cache)


def test_every_stage_trains_on_the_layout_and_exports(layout, tmp_path):
    from collab.registry import load_model

    cfg = tiny_config({"mask": "mask", "text": "text"})
    recipe = tiny_recipe(layout, cfg.image_size)
    said = []
    out = run_recipe(Engine(EngineConfig("cpu")), tmp_path / "run", tmp_path / "out", recipe,
                     LayoutSource(layout, recipe, VOCAB), cfg, said.append)
    for stage in ("vae", "ldm_mask", "ldm_text", "diffusers"):
        assert (tmp_path / "run" / f"{stage}.ckpt").exists(), stage
    assert LatentCache.done(tmp_path / "run" / f"latents_{cfg.image_size}.npy")
    model = load_model(out)
    assert set(model.names) == {"mask", "text"} and set(model.diffusers) == {"mask", "text"}
    assert (out / "vocab.txt").read_text() == VOCAB.read_text()


def test_algorithm_1_on_official_collaborator_checkpoints(layout, tmp_path):
    """Official uni-modal checkpoints in, collaborators kept as they are, only the diffusers trained."""
    from tests.test_checkpoint import _official_sd, _unimodal

    from collab.registry import load_model

    files = []
    for branch, name in (("seg_mask", "mask"), ("text", "text")):
        files.append(tmp_path / f"tiny_{name}.ckpt")
        torch.save({"state_dict": _unimodal(_official_sd(), branch)}, files[-1])
    cfg = load_official_config(COMPOSE_YAML)
    warm = WarmStart.load(files, config=cfg)
    recipe = tiny_recipe(layout, cfg.image_size)
    said = []
    out = run_recipe(Engine(EngineConfig("cpu")), tmp_path / "run", tmp_path / "out", recipe,
                     LayoutSource(layout, recipe, VOCAB), cfg, said.append, init=warm, keep=("mask", "text"))
    assert any("VAE taken from" in s for s in said) and sum("kept as in" in s for s in said) == 2
    assert not (tmp_path / "run" / "vae.ckpt").exists() and not (tmp_path / "run" / "ldm_mask.ckpt").exists()
    assert (tmp_path / "run" / "diffusers.ckpt").exists()
    model = load_model(out)
    ref = _official_sd()
    assert torch.equal(model.collaborators["text"].out[2].weight.float(),
                       ref["model.text_unet.diffusion_model.out.2.weight"].half().float())
    assert model.config.scale_factor == pytest.approx(0.058)  # the official collaborators' latent scale


def test_cli_errors_are_messages_not_tracebacks(capsys, tmp_path):
    assert cli(["--recipe", "official_256", "--run", str(tmp_path)]) == 2
    assert "give --data DIR" in capsys.readouterr().err
    assert cli(["--recipe", "nope", "--run", str(tmp_path)]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
    assert cli(["--set", "ldm.lr=fast", "--run", str(tmp_path)]) == 2
    assert "ldm.lr: 'fast' is not a valid float" in capsys.readouterr().err
    assert cli(["--devices", "0", "--run", str(tmp_path)]) == 2
    assert "--devices must be at least 1" in capsys.readouterr().err
    assert cli(["--recipe", "official_256", "--data", str(tmp_path), "--run", str(tmp_path / "r"),
                "--accelerator", "cpu", "--logger", "none"]) == 2
    assert "no captions.json there" in capsys.readouterr().err


def test_cli_trains_the_joint_baseline_on_the_layout(layout, tmp_path):
    """`python -m collab.train --data DIR --config joint` (the joint baseline's kind) with overrides."""
    from collab.config import save_config
    from collab.model_folder import folder_layout, load_folder_config

    cfg = tiny_config({"joint": "joint"}, diffusers=False)
    (tmp_path / "cfgdir").mkdir()
    save_config(cfg, tmp_path / "cfgdir" / "config.yaml")
    sets = [f"{s}.{k}={v}" for s in ("vae", "ldm") for k, v in
            (("steps", 2), ("batch_size", 2), ("save_every", 1), ("scale_lr", "false"), ("lr", 1e-4))]
    code = cli(["--recipe", "official_256", "--data", str(layout), "--config", str(tmp_path / "cfgdir" / "config.yaml"),
                "--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--accelerator", "cpu",
                "--logger", "csv", "--set", f"data.size={cfg.image_size}", "--set", "data.test_size=2",
                "--set", "data.workers=0", "--set", "vae.accumulate=1", *sum((["--set", s] for s in sets), [])])
    assert code == 0
    assert (tmp_path / "run" / "ldm_joint.ckpt").exists() and folder_layout(tmp_path / "out") == "components"
    metrics = list((tmp_path / "run" / "logs").rglob("metrics.csv"))
    assert metrics and "ldm_joint/loss" in metrics[0].read_text().splitlines()[0]
    assert load_folder_config(tmp_path / "out")[0].modalities[0].kind == "joint"


def test_warm_start_into_an_architecture_that_adds_a_zero_path():
    """An exported model warm-starts a UNet with the mean path (added at zero, so the same function);
    a tensor the source lacks that does not start at zero is an error naming it."""
    from dataclasses import replace

    from collab.unet import UNetModel
    from tests.conftest import TINY_UNET, randomize

    source = randomize(UNetModel(TINY_UNET))
    warm = WarmStart({f"collaborators.mask.{k}": v for k, v in source.state_dict().items()}, "test", None)
    grown = UNetModel(replace(TINY_UNET, mean_path=True))
    assert warm.load_into(grown, "collaborators.mask.")
    x, t, c = torch.randn(1, 3, 8, 8), torch.tensor([3]), torch.randn(1, 4, 16)
    torch.testing.assert_close(grown(x, t, c), source(x, t, c))
    wider = UNetModel(replace(TINY_UNET, num_res_blocks=2))
    with pytest.raises(ValueError, match="collaborators.mask lacks input_blocks.2.0.*another architecture"):
        warm.load_into(wider, "collaborators.mask.")  # the added blocks start random, not at zero
    part = {k: v for k, v in source.state_dict().items() if k != "out.0.weight"}  # GroupNorm weight: ones
    with pytest.raises(ValueError, match="out.0.weight"):
        WarmStart({f"c.{k}": v for k, v in part.items()}, "test", None).load_into(UNetModel(TINY_UNET), "c.")
    assert not warm.load_into(grown, "collaborators.text.")
