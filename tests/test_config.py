import pytest

from collab.config import config_from_dict, config_to_dict, load_config, load_official_config, shipped_configs
from tests.conftest import REFERENCE, tiny_config


def test_official_fixture_yaml_parses_to_the_expected_architecture():
    cfg = load_official_config(REFERENCE / "compose_tiny_compose.yaml")
    assert cfg.names == ("mask", "text")  # the official softmax order: mask first
    mask, text = cfg.modalities
    assert mask.leads_early and not text.leads_early and mask.official_name == "seg_mask"
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


def test_leads_early_is_written_and_the_old_key_layout_still_read():
    cfg = load_config("demo")
    data = config_to_dict(cfg)
    assert [m["leads_early"] for m in data["modalities"]] == [m.leads_early for m in cfg.modalities]
    assert "layout" not in data["modalities"][0]
    old = {**data, "modalities": [{("layout" if k == "leads_early" else k): v for k, v in m.items()}
                                  for m in data["modalities"]]}
    assert config_from_dict(old) == cfg and cfg.modalities[0].layout == cfg.modalities[0].leads_early
    both = {**data, "modalities": [{**data["modalities"][0], "layout": True}, *data["modalities"][1:]]}
    with pytest.raises(ValueError, match="both 'leads_early' and its old name 'layout'"):
        config_from_dict(both)
