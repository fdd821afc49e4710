"""On a CUDA GPU: modules and batches on the device, mixed precision, a whole tiny run. Skipped
(and reported as skipped) without CUDA."""
import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
def test_a_stage_runs_on_the_gpu(tmp_path, precision):
    from tests.conftest import TINY_UNET, tiny_encoder

    from collab.encoders import build_encoder
    from collab.schedule import DiffusionSchedule
    from collab.train.engine import Engine, EngineConfig
    from collab.train.loop import LoopConfig, train
    from collab.train.losses import ldm_loss
    from collab.unet import UNetModel

    unet, enc = UNetModel(TINY_UNET), build_encoder("mask", tiny_encoder("mask"))
    sched = DiffusionSchedule.linear()
    data = [{"index": torch.tensor(i), "latent": torch.randn(3, 8, 8), "mask": torch.zeros(19, 1024)}
            for i in range(16)]
    seen = []

    def fn(batch, g):
        seen.append((batch["latent"].device.type, next(unet.parameters()).device.type))
        return ldm_loss(unet, enc, batch["mask"], batch["latent"], sched, g)

    eng = Engine(EngineConfig(accelerator="cuda", precision=precision))
    out = train(eng, tmp_path, "s", {"unet": unet, "encoder": enc}, fn, data,
                LoopConfig(steps=3, lr=1e-4, batch_size=4, quiet=True, save_every=2))
    assert seen and all(s == ("cuda", "cuda") for s in seen)
    assert all(torch.isfinite(v).all() for v in out["unet"].values())


def test_a_whole_tiny_run_on_the_gpu(tmp_path):
    from tests.train.test_layout_training import tiny_recipe

    from collab.data.layout import write_official_layout
    from collab.registry import load_model
    from collab.train.engine import Engine, EngineConfig
    from collab.train.runner import LayoutSource, run_recipe
    from tests.conftest import VOCAB, tiny_config

    write_official_layout(tmp_path / "data", 10, size=64)
    cfg = tiny_config({"mask": "mask", "text": "text"})
    recipe = tiny_recipe(tmp_path / "data", cfg.image_size)
    out = run_recipe(Engine(EngineConfig(accelerator="cuda", precision="bf16-mixed")), tmp_path / "run",
                     tmp_path / "out", recipe, LayoutSource(tmp_path / "data", recipe, VOCAB), cfg, print)
    assert set(load_model(out).diffusers) == {"mask", "text"}


def test_fsdp_trains_and_hands_back_whole_modules(tmp_path):
    from collab.train.engine import Engine, EngineConfig
    from collab.train.loop import LoopConfig, apply_weights, train

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    data = [{"index": torch.tensor(i), "x": torch.randn(4)} for i in range(16)]
    eng = Engine(EngineConfig(accelerator="cuda", strategy="fsdp"))
    out = train(eng, tmp_path, "s", {"net": net}, lambda b, g: net(b["x"]).pow(2).mean(), data,
                LoopConfig(steps=2, lr=1e-3, batch_size=4, quiet=True))
    assert out["net"]["0.weight"].shape == (8, 4)
    apply_weights({"net": net}, out)
    assert net(torch.randn(2, 4, device=eng.device)).shape == (2, 1)
