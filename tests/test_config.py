import pytest

from collab.config import config_from_dict, config_to_dict, load_config, load_official_config, shipped_configs
from tests.conftest import REFERENCE, tiny_config


def test_official_fixture_yaml_parses_to_the_expected_architecture():
    cfg = load_official_config(REFERENCE / "compose_tiny_compose.yaml")
    assert cfg.names == ("mask", "text")  # the official softmax order: mask first
    mask, text = cfg.modalities
    assert mask.layout and not text.layout and mask.official_name == "seg_mask"
    assert mask.collaborator.channel_mult == (1, 1, 2) and mask.collaborator.num_heads == 4
    assert mask.diffuser.out_channels == 1 and text.encoder.n_layer == 2
    assert cfg.vae.ch_mult == (1, 2, 2) and cfg.scale_factor == 0.058 and cfg.latent_size == 16
    assert cfg.default_rule == "official"


def test_uni_modal_official_yaml():
    cfg = load_official_config(REFERENCE / "compose_tiny_text.yaml")
    assert cfg.names == ("text",) and cfg.modalities[0].diffuser is None


def test_shipped_configs_round_trip():
    assert {"official_256", "official_512"} <= set(shipped_configs())
    for name in shipped_configs():
        cfg = load_config(name)
        assert config_from_dict(config_to_dict(cfg)) == cfg
    assert load_config("official_512").vae.downsample_factor == 8


def test_errors_name_the_problem(tmp_path):
    data = config_to_dict(tiny_config())
    data["vae"]["colour"] = 3
    with pytest.raises(ValueError, match="unknown fields \\['colour'\\]"):
        config_from_dict(data)
    with pytest.raises(FileNotFoundError, match="shipped configs"):
        load_config("official_1024")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  target: ldm.models.diffusion.ddpm.Other\n  params: {image_size: 8}\n")
    with pytest.raises(ValueError, match="unsupported model target"):
        load_config(bad)
