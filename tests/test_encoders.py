import json

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
