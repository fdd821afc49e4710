"""Raw user conditions (a prompt, a mask file) -> the tensors a condition encoder takes.

One small class per kind of input; a modality names its kind, so adding a modality with an existing
kind of input needs no code. Which class serves which kind is said in `collab.kinds`.
"""
from __future__ import annotations

import numbers
import re
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from collab import validate
from collab.masks import MASK_GRID, labels_to_onehot, load_mask
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
            try:
                raw = validate.text("the text condition", raw)
            except (TypeError, ValueError) as e:
                raise ConditionError(str(e)) from None
            if not raw.strip() and not self.allow_empty:
                raise ConditionError("the text condition is empty; write a description such as "
                                     "'This man has beard of medium length. He is in his thirties.'")
            texts.append(raw.lower() if self.lower_case else raw)
        tokens = self.tokenizer.encode(texts, max_length=self.max_length)
        for text, length in zip(texts, tokens.lengths.tolist()):
            if length <= 2 and not self.allow_empty:  # [CLS] [SEP]: control, zero-width, format characters only
                raise ConditionError(f"the text condition {validate.show(text)} has no readable word (only "
                                     "spaces, control or invisible characters)")
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
            if isinstance(raw, (torch.Tensor, np.ndarray)) and tuple(raw.shape) == ONEHOT_SHAPE:
                out.append(check_class_probabilities(raw))  # already encoded [19, 1024]
                continue
            out.append(labels_to_onehot(load_mask(raw)))
        return torch.stack(out)


ONEHOT_SHAPE = (19, MASK_GRID * MASK_GRID)


def check_class_probabilities(raw: np.ndarray | torch.Tensor) -> torch.Tensor:
    """An encoded mask [19, 1024]: per pixel one-hot or class probabilities (>= 0, summing to 1)."""
    try:
        validate.numeric_array("an encoded mask [19, 1024]", raw)
    except (TypeError, ValueError) as e:
        raise ConditionError(str(e)) from None
    x = torch.as_tensor(raw).detach().cpu().float()
    sums = x.sum(0)
    if bool((x < 0).any()) or not torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
        raise ConditionError("an encoded mask [19, 1024] must hold, per pixel (column), a one-hot vector or class "
                             f"probabilities summing to 1; found values in [{float(x.min()):g}, {float(x.max()):g}] "
                             f"and column sums in [{float(sums.min()):g}, {float(sums.max()):g}]")
    return x


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
                if not isinstance(name, str):
                    raise ConditionError(f"attribute names are strings, got {validate.show(name)}")
                try:
                    vec[self._index(name)] = float(validate.flag(f"attribute {name!r}", value))
                except ValueError as e:
                    raise ConditionError(str(e)) from None
            return vec
        if raw is None:
            raise ConditionError("an attribute condition is a string of names, a dict or a 0/1 vector, got None")
        if isinstance(raw, (numbers.Number, np.generic)):
            raise ConditionError("an attribute condition is a whole vector, a string of names or a dict, "
                                 f"not a single number {validate.show(raw)} (a list of numbers is read as a batch)")
        try:
            array = raw.detach().cpu() if isinstance(raw, torch.Tensor) else np.asarray(raw)
            validate.numeric_array("an attribute vector", array)
            vec = torch.as_tensor(array).flatten().float()
        except (TypeError, ValueError, RuntimeError) as e:
            raise ConditionError(f"cannot read an attribute condition from {validate.show(raw)}: {e}") from None
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
    """The input adapter of a modality of `kind` (from its encoder's registered kind, `collab.kinds`);
    None for text when no tokenizer is available."""
    from collab import kinds

    entry = kinds.kind_of(encoder_config) if kind in kinds.modality_kinds() else None
    if entry not in kinds.serving(kind):  # an unknown kind raises here, naming the known ones
        raise TypeError(f"kind {kind!r} has no encoder config {type(encoder_config).__name__}")
    return entry.adapter(encoder_config, tokenizer)
