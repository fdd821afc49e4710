import pytest
import torch
from safetensors.torch import load_file

from collab.vae import AutoencoderKL, DiagonalGaussian, VAEConfig
from tests.conftest import REFERENCE, randomize


def test_matches_official_autoencoder():
    w = load_file(REFERENCE / "compose_tiny_weights.safetensors")
    io = load_file(REFERENCE / "compose_tiny_io.safetensors")
    vae = AutoencoderKL(VAEConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, resolution=64)).eval()
    vae.load_state_dict({k[18:]: v.float() for k, v in w.items() if k.startswith("first_stage_model.")}, strict=True)
    with torch.no_grad():
        post = vae.encode(io["vae_in"])
        dec = vae.decode(io["vae_post_mean"])
    for ours, key in ((post.mean, "vae_post_mean"), (post.logvar, "vae_post_logvar"), (dec, "vae_dec_of_mean")):
        assert (ours - io[key]).abs().max() <= 1e-4 * max(1.0, float(io[key].abs().max())), key


@pytest.mark.parametrize("mult,factor", [((1, 2, 4), 4), ((1, 2, 4, 4), 8)])
def test_f4_and_f8_shapes(mult, factor):
    cfg = VAEConfig(ch=32, ch_mult=mult, num_res_blocks=1, resolution=64, attn_resolutions=(16,))
    vae = randomize(AutoencoderKL(cfg)).eval()
    assert cfg.downsample_factor == factor
    with torch.no_grad():
        post = vae.encode(torch.rand(2, 3, 64, 64) * 2 - 1)
        assert post.mean.shape == (2, 3, 64 // factor, 64 // factor)
        assert vae.decode(post.mean).shape == (2, 3, 64, 64)


def test_posterior_sampling_is_seeded_and_kl_is_zero_for_the_prior():
    post = DiagonalGaussian.from_moments(torch.zeros(1, 6, 4, 4))
    a = post.sample(torch.Generator().manual_seed(3))
    b = post.sample(torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.std() > 0.5
    assert torch.allclose(post.kl(), torch.zeros(1))
    assert DiagonalGaussian.from_moments(torch.full((1, 6, 2, 2), 100.0)).logvar.max() == 20.0  # clamped


def test_without_normalisation_the_vae_has_no_norm_layers():
    cfg = VAEConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, resolution=32, norm_groups=0)
    vae = AutoencoderKL(cfg)
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in vae.modules())
    assert vae.decode(vae.encode(torch.zeros(1, 3, 32, 32)).mean).shape == (1, 3, 32, 32)


def test_colour_path_carries_cell_means_and_adds_no_weights():
    base = VAEConfig(ch=16, ch_mult=(1, 2, 4), num_res_blocks=1, resolution=32, norm_groups=0)
    plain, rgb = AutoencoderKL(base), AutoencoderKL(VAEConfig(**{**base.__dict__, "rgb_shortcut": True}))
    assert plain.state_dict().keys() == rgb.state_dict().keys()
    for p in rgb.parameters():  # networks silent: only the colour path is left
        torch.nn.init.zeros_(p)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = rgb.encode(x).mean
        assert torch.allclose(z, torch.nn.functional.avg_pool2d(x, 4), atol=1e-6)
        flat = torch.full((1, 3, 32, 32), 0.3)
        assert torch.allclose(rgb.decode(rgb.encode(flat).mean), flat, atol=1e-6)  # a flat colour survives exactly
    with pytest.raises(ValueError, match="rgb_shortcut"):
        VAEConfig(embed_dim=2, z_channels=2, rgb_shortcut=True)
