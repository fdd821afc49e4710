"""Raw user conditions (a prompt, a mask file) -> the tensors a condition encoder takes.

One small class per kind of input; a modality names its kind, so adding a modality with an existing
kind of input needs no code, and a new kind is one class here.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from collab.encoders import PretrainedTextEncoderConfig
from collab.masks import labels_to_onehot, load_mask
from collab.tokenizer import WordPieceTokenizer


class ConditionError(ValueError):
    """A user condition that cannot be used, with a message saying why."""


class ConditionInput(Protocol):
    kind: str

    def prepare(self, raws: Sequence[Any]) -> Any:
        """A batch of raw conditions -> the encoder's input (a tensor, or a dict of them; on CPU)."""
        ...


@dataclass
class TextInput:
    """Prompts -> token ids [B, max_length]; lower-cased first, as the official scripts do (a
    pre-trained encoder's own tokenizer decides that itself: `lower_case=False`)."""

    tokenizer: Any  # WordPieceTokenizer, or collab.hf_text.BackboneTokenizer: anything with `encode`
    max_length: int = 77
    allow_empty: bool = False
    kind: str = "text"
    lower_case: bool = True

    def prepare(self, raws: Sequence[Any]) -> torch.Tensor:
        texts = []
        for raw in raws:
            if not isinstance(raw, str):
                raise ConditionError(f"a text condition must be a string, got {type(raw).__name__}")
            if not raw.strip() and not self.allow_empty:
                raise ConditionError("the text condition is empty; write a description such as "
                                     "'This man has beard of medium length. He is in his thirties.'")
            texts.append(raw.lower() if self.lower_case else raw)
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


@dataclass
class AttributeInput:
    """Binary attributes -> 0/1 vectors [B, K] in the order of `names`.

    One condition is a comma-separated string of the attributes that hold ("male, smiling"; "" or
    "none" = none of them), a {name: bool} dict (absent names = false), or a 0/1 vector of length K.
    A batch is a list of those, or a [B, K] array.
    """

    names: tuple[str, ...]
    kind: str = "attributes"

    def _index(self, name: str) -> int:
        key = name.strip().lower().replace(" ", "_").replace("-", "_")
        if key not in self.names:
            raise ConditionError(f"unknown attribute {name.strip()!r}; known: {', '.join(self.names)}")
        return self.names.index(key)

    def _one(self, raw: Any) -> torch.Tensor:
        k = len(self.names)
        vec = torch.zeros(k)
        if isinstance(raw, str):
            items = [s for s in re.split(r"[,;\n]", raw) if s.strip()]
            if [s.strip().lower() for s in items] == ["none"]:
                items = []
            for s in items:
                vec[self._index(s)] = 1.0
            return vec
        if isinstance(raw, dict):
            for name, value in raw.items():
                vec[self._index(str(name))] = float(bool(value))
            return vec
        if isinstance(raw, (int, float, bool)):
            raise ConditionError("an attribute condition is a whole vector, a string of names or a dict, "
                                 "not a single number (a list of numbers is read as a batch)")
        try:
            vec = torch.as_tensor(np.asarray(raw, dtype=np.float32)).flatten()
        except (TypeError, ValueError) as e:
            raise ConditionError(f"cannot read an attribute condition from {type(raw).__name__}") from e
        if vec.numel() != k:
            raise ConditionError(f"an attribute vector needs {k} entries ({', '.join(self.names)}), got {vec.numel()}")
        if not torch.all((vec == 0) | (vec == 1)):
            raise ConditionError("attribute vectors must hold only 0 and 1")
        return vec

    def prepare(self, raws: Sequence[Any]) -> torch.Tensor:
        rows = []
        for raw in raws:
            if isinstance(raw, (np.ndarray, torch.Tensor)) and raw.ndim == 2:
                rows.extend(self._one(r) for r in raw)
            else:
                rows.append(self._one(raw))
        return torch.stack(rows)

    def describe(self, vec: torch.Tensor) -> str:
        """The names that hold, comma-separated ("none" if none)."""
        on = [n for n, v in zip(self.names, vec.tolist()) if v >= 0.5]
        return ", ".join(on) or "none"


@dataclass
class JointInput:
    """{part name: raw condition} -> {part name: encoder input} for a joint (multi-condition) encoder."""

    parts: dict[str, ConditionInput]
    kind: str = "joint"

    def prepare(self, raws: Sequence[Any]) -> dict[str, torch.Tensor]:
        for raw in raws:
            if not isinstance(raw, dict):
                raise ConditionError(f"a joint condition is a dict with {', '.join(self.parts)}, got {type(raw).__name__}")
            missing = [k for k in self.parts if k not in raw]
            if missing:
                raise ConditionError(f"a joint condition needs every one of {', '.join(self.parts)}; missing {', '.join(missing)}")
            unknown = [k for k in raw if k not in self.parts]
            if unknown:
                raise ConditionError(f"unknown parts {', '.join(map(str, unknown))} of a joint condition; "
                                     f"it takes {', '.join(self.parts)}")
        return {k: adapter.prepare([raw[k] for raw in raws]) for k, adapter in self.parts.items()}


def input_for(kind: str, encoder_config: Any, tokenizer: WordPieceTokenizer | None = None) -> ConditionInput | None:
    """The input adapter of a modality of `kind`; None for text when no tokenizer is available."""
    if kind == "text" and isinstance(encoder_config, PretrainedTextEncoderConfig):
        from collab.hf_text import BackboneTokenizer, resolve_backbone  # its own tokenizer, from its folder

        return TextInput(BackboneTokenizer(resolve_backbone(encoder_config.backbone)),
                         max_length=encoder_config.max_seq_len, lower_case=False)
    if kind == "text":
        return TextInput(tokenizer, max_length=encoder_config.max_seq_len) if tokenizer is not None else None
    if kind in ("mask", "mask_grid"):
        return MaskInput(kind=kind)
    if kind == "attributes":
        return AttributeInput(tuple(encoder_config.names))
    if kind == "joint":
        parts = {p.name: input_for(p.kind, p.encoder, tokenizer) for p in encoder_config.parts}
        return None if any(a is None for a in parts.values()) else JointInput(parts)
    raise ValueError(f"unknown condition kind {kind!r}; known kinds: text, mask, mask_grid, attributes, joint")
