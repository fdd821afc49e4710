import json

import pytest
import torch
from safetensors.torch import load_file

from collab.config import unet_from_official
from collab.unet import UNetConfig, UNetModel
from tests.conftest import REFERENCE, TINY_UNET, randomize

DEBUG = REFERENCE / "debug"


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


@pytest.fixture(scope="module")
def golden_unet():
    meta = json.loads((DEBUG / "unet_tiny.json").read_text())
    net = UNetModel(unet_from_official(meta["config"])).eval()
    net.load_state_dict(load_file(DEBUG / "unet_tiny.safetensors"), strict=True)
    return net, load_file(DEBUG / "unet_tiny.io.safetensors")


def test_every_block_matches_official_activations(golden_unet):
    net, io = golden_unet
    acts = {}
    blocks = {**{f"debug.input_blocks.{i}": b for i, b in enumerate(net.input_blocks)},
              **{f"debug.output_blocks.{i}": b for i, b in enumerate(net.output_blocks)},
              "debug.middle_block": net.middle_block, "debug.time_embed": net.time_embed}
    for k, m in blocks.items():
        m.register_forward_hook(lambda mod, i, o, k=k: acts.__setitem__(k, o))
    with torch.no_grad():
        out = net(io["x"], io["timesteps"], io["context"])
    assert set(acts) == {k for k in io if k.startswith("debug.") and k != "debug.t_emb_sinusoidal"}
    for k, v in acts.items():
        assert rel_err(v, io[k]) < 1e-4, k
    assert rel_err(out, io["output"]) < 1e-4


def test_heads_follow_the_official_rule():
    by_heads = UNetConfig(num_heads=32, legacy=False)
    assert by_heads.heads(384) == (32, 12) and by_heads.heads(960) == (32, 30)
    by_width = UNetConfig(num_head_channels=64, legacy=False)
    assert by_width.heads(384) == (6, 64)
    with pytest.raises(ValueError, match="exactly one"):
        UNetConfig(num_heads=4, num_head_channels=8)


def test_official_256_sizes_match_the_paper():
    # Table A2 of the paper: 403.6M per collaborator, 13.1M per dynamic diffuser
    cfg = UNetConfig(model_channels=192, channel_mult=(1, 2, 3, 5), attention_resolutions=(8, 4, 2),
                     num_heads=32, context_dim=640, legacy=False)
    with torch.device("meta"):
        collab = UNetModel(cfg)
        diffuser = UNetModel(UNetConfig(**{**cfg.__dict__, "model_channels": 32, "out_channels": 1}))
    assert sum(p.numel() for p in collab.parameters()) == 403_623_939
    assert sum(p.numel() for p in diffuser.parameters()) == 13_136_321


@pytest.mark.parametrize("scale_shift", [False, True])
def test_output_shape_batch_and_scalar_timestep(scale_shift):
    cfg = UNetConfig(**{**TINY_UNET.__dict__, "use_scale_shift_norm": scale_shift, "out_channels": 1})
    net = randomize(UNetModel(cfg)).eval()
    x, ctx = torch.randn(3, 3, 8, 8), torch.randn(3, 5, 16)
    with torch.no_grad():
        out = net(x, torch.tensor([10, 500, 990]), ctx)
        same_t = net(x, torch.tensor(500), ctx)
    assert out.shape == (3, 1, 8, 8)
    assert torch.equal(same_t[1], out[1])
    assert not torch.allclose(same_t[0], out[0])  # the timestep matters


def test_bfloat16_stays_close_to_float32():
    net = randomize(UNetModel(TINY_UNET)).eval()
    x, ctx, t = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 16), torch.tensor([100, 800])
    with torch.no_grad():
        ref = net(x, t, ctx)
        low = net.to(torch.bfloat16)(x, t, ctx)
    assert low.dtype == torch.float32  # outputs come back in the input dtype
    assert rel_err(low, ref) < 5e-2


def test_mean_path_starts_as_the_plain_unet_and_learns_the_input_mean():
    from dataclasses import replace

    torch.manual_seed(0)
    plain = randomize(UNetModel(TINY_UNET))
    with_path = UNetModel(replace(TINY_UNET, mean_path=True))
    missing = with_path.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("mean_path.") for k in missing)
    x, t, c = torch.randn(2, 3, 8, 8), torch.tensor([5, 900]), torch.randn(2, 4, 16)
    torch.testing.assert_close(with_path(x, t, c), plain(x, t, c))  # zero at the start: the same function
    # the path alone can move the output's per-channel mean by an affine map of the input's means,
    # which group norm on the output path cannot (the reason it exists)
    opt = torch.optim.Adam(with_path.mean_path.parameters(), lr=0.05)
    for _ in range(200):
        x = torch.randn(8, 3, 8, 8) + torch.randn(8, 3, 1, 1)
        target_mean = x.mean(dim=(2, 3))[:, [1, 2, 0]]  # a channel permutation of the input's means
        err = with_path(x, torch.full((8,), 900), torch.randn(8, 4, 16)).mean(dim=(2, 3)) - target_mean
        loss = err.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * target_mean.pow(2).mean().item()


def test_mean_offset_is_the_affine_map_of_the_means():
    from collab.unet import mean_offset

    x = torch.randn(2, 3, 4, 4)
    coef = torch.randn(2, 2 * 4)
    got = mean_offset(coef, x, 2)
    ab = coef.view(2, 2, 4)
    want = ab[..., :3] @ x.mean(dim=(2, 3))[..., None]
    torch.testing.assert_close(got[..., 0, 0], want[..., 0] + ab[..., 3])
