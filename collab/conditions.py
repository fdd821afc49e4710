"""Raw user conditions (a prompt, a mask file) -> the tensors a condition encoder takes.

One small class per kind of input; a modality names its kind, so adding a modality with an existing
kind of input needs no code, and a new kind is one class here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import torch

from collab.masks import labels_to_onehot, load_mask
from collab.tokenizer import WordPieceTokenizer


class ConditionError(ValueError):
    """A user condition that cannot be used, with a message saying why."""


class ConditionInput(Protocol):
    kind: str

    def prepare(self, raws: Sequence[Any]) -> torch.Tensor:
        """A batch of raw conditions -> the encoder's input tensor (on CPU)."""
        ...


@dataclass
class TextInput:
    """Prompts -> BERT token ids [B, 77]; lower-cased first, as the official scripts do."""

    tokenizer: WordPieceTokenizer
    max_length: int = 77
    allow_empty: bool = False
    kind: str = "text"

    def prepare(self, raws: Sequence[Any]) -> torch.Tensor:
        texts = []
        for raw in raws:
            if not isinstance(raw, str):
                raise ConditionError(f"a text condition must be a string, got {type(raw).__name__}")
            if not raw.strip() and not self.allow_empty:
                raise ConditionError("the text condition is empty; write a description such as "
                                     "'This man has beard of medium length. He is in his thirties.'")
            texts.append(raw.lower())
        tokens = self.tokenizer.encode(texts, max_length=self.max_length)
        for text, cut in zip(texts, tokens.truncated):
            if cut:
                warnings.warn(f"text longer than {self.max_length} tokens was truncated: {text[:60]!r}...",
                              stacklevel=3)
        return tokens.ids


@dataclass
class MaskInput:
    """Label maps (palette PNG, colour PNG, array, path) -> one-hot [B, 19, 1024]."""

    kind: str = "mask"

    def prepare(self, raws: Sequence[Any]) -> torch.Tensor:
        out = []
        for raw in raws:
            if isinstance(raw, torch.Tensor) and raw.ndim == 2 and raw.shape[0] == 19:
                out.append(raw.float())  # already one-hot [19, 1024]
                continue
            out.append(labels_to_onehot(load_mask(raw)))
        return torch.stack(out)


def make_input(kind: str, **kwargs: Any) -> ConditionInput:
    """Build the input adapter for one modality kind ("text" needs `tokenizer`)."""
    builders = {"text": TextInput, "mask": MaskInput}
    if kind not in builders:
        raise ValueError(f"unknown condition kind {kind!r}; known kinds: {', '.join(builders)}")
    return builders[kind](**kwargs)
