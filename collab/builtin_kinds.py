"""The built-in condition kinds, registered in `collab.kinds` when this module is imported.

text (the official BERT trained with the LDM), pretrained_text (a frozen Hugging Face text encoder
and a trained projection: a variant of text), mask (one token per class, the official encoder),
mask_grid (8x8 spatial tokens), attributes (yes/no flags) and joint (several encoders' tokens
concatenated, for one network trained on all of them).
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import torch

from collab import validate
from collab.conditions import AttributeInput, ConditionError, JointInput, MaskInput, TextInput
from collab.encoders import (AttributeEncoder, AttributeEncoderConfig, EncoderPart, GridMaskEncoder, GridMaskEncoderConfig,
                             JointEncoder, JointEncoderConfig, MaskEncoder, MaskEncoderConfig, PretrainedTextEncoder,
                             PretrainedTextEncoderConfig, TextEncoder, TextEncoderConfig)
from collab.kinds import ConditionKind, Widget, kind_of, register

# ---------------------------------------------------------------- text


def _text_adapter(cfg: TextEncoderConfig, tokenizer) -> TextInput | None:
    return TextInput(tokenizer, max_length=cfg.max_seq_len) if tokenizer is not None else None


def _pretrained_text_adapter(cfg: PretrainedTextEncoderConfig, tokenizer) -> TextInput:
    from collab.hf_text import BackboneTokenizer, resolve_backbone  # its own tokenizer, from its folder

    return TextInput(BackboneTokenizer(resolve_backbone(cfg.backbone)), max_length=cfg.max_seq_len, lower_case=False)


def _captions(cfg, data, idx, paraphrase: bool) -> list:
    return [(data.paraphrases if paraphrase else data.captions)[i] for i in idx]


def _parse_text(value: str, flag: str) -> str:
    if not validate.text(flag, value).strip():
        raise ConditionError(f"{flag} is empty")
    return value


def _pretrained_states(batch: Mapping[str, Any], cfg: PretrainedTextEncoderConfig):
    return batch["text_states"] if "text_states" in batch else batch["tokens"]  # cached frozen states, or ids


_TEXT = dict(modality="text", reads="text", held_out=_captions, parse=_parse_text,
             widget=lambda cfg: Widget("textbox"), help="a description, e.g. 'He is in his thirties.'")
TEXT = ConditionKind(
    name="text", config=TextEncoderConfig, encoder=TextEncoder, adapter=_text_adapter,
    train_input=lambda batch, cfg: batch["tokens"],
    example=lambda cfg, b, g: torch.randint(0, cfg.vocab_size, (b, cfg.max_seq_len), generator=g),
    needs_vocab=True, **_TEXT)
PRETRAINED_TEXT = ConditionKind(
    name="pretrained_text", config=PretrainedTextEncoderConfig, encoder=PretrainedTextEncoder,
    adapter=_pretrained_text_adapter, train_input=_pretrained_states,
    example=lambda cfg, b, g: torch.randn((b, cfg.max_seq_len, cfg.width), generator=g),  # cached states
    frozen_backbone=True, **_TEXT)

# ---------------------------------------------------------------- masks


def _labels(cfg, data, idx, paraphrase: bool) -> list:
    return [data.labels[i] for i in idx]


def _parse_mask(value: str, flag: str):
    from collab.masks import load_mask

    return load_mask(value)


def _random_onehot(cfg, b: int, g: torch.Generator) -> torch.Tensor:
    labels = torch.randint(0, cfg.num_classes, (b, cfg.mask_embed_dim), generator=g)
    return torch.nn.functional.one_hot(labels, cfg.num_classes).transpose(1, 2).float()


_MASK = dict(reads="mask", train_input=lambda batch, cfg: batch["mask"], held_out=_labels, parse=_parse_mask,
             example=_random_onehot, widget=lambda cfg: Widget("mask"),
             help="a mask PNG (palette label indices, or the official colours) or .npy")
MASK = ConditionKind(name="mask", modality="mask", config=MaskEncoderConfig, encoder=MaskEncoder,
                     adapter=lambda cfg, tok: MaskInput(kind="mask"), **_MASK)
MASK_GRID = ConditionKind(name="mask_grid", modality="mask_grid", config=GridMaskEncoderConfig, encoder=GridMaskEncoder,
                          adapter=lambda cfg, tok: MaskInput(kind="mask_grid"), **_MASK)

# ---------------------------------------------------------------- attributes


def _flags(cfg: AttributeEncoderConfig, data, idx, paraphrase: bool) -> list:
    from collab.data.faceworld import BINARY_ATTRIBUTES

    if tuple(cfg.names) != BINARY_ATTRIBUTES:
        raise ValueError(f"the evaluation has face-world attributes {BINARY_ATTRIBUTES}, the model "
                         f"expects {cfg.names}")
    return [data.flags[i] for i in idx]


def _parse_attributes(value: str, flag: str) -> str | dict:
    """"male,smiling" (the names that hold; "none": none of them) or a JSON object {"male": true}."""
    if not value.lstrip().startswith("{"):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise ConditionError(f"{flag}: {value!r} is not a JSON object ({e.msg}); give names such as "
                             "male,smiling or {\"male\": true}") from None
    if not isinstance(parsed, dict):
        raise ConditionError(f"{flag}: expected a JSON object, got {value!r}")
    return parsed


ATTRIBUTES = ConditionKind(
    name="attributes", modality="attributes", reads="attributes", config=AttributeEncoderConfig,
    encoder=AttributeEncoder, adapter=lambda cfg, tok: AttributeInput(tuple(cfg.names)),
    train_input=lambda batch, cfg: batch["attributes"], held_out=_flags, parse=_parse_attributes,
    example=lambda cfg, b, g: torch.randint(0, 2, (b, len(cfg.names)), generator=g).float(),
    widget=lambda cfg: Widget("checkboxes", tuple(cfg.names)),
    help='the attributes that hold, e.g. male,smiling ("none": none of them), or {"male": true}')

# ---------------------------------------------------------------- joint


def _joint_parts(cfg: JointEncoderConfig) -> tuple:
    return tuple((p.name, p.kind, p.encoder) for p in cfg.parts)


def _joint_adapter(cfg: JointEncoderConfig, tokenizer) -> JointInput | None:
    parts = {p.name: kind_of(p.encoder).adapter(p.encoder, tokenizer) for p in cfg.parts}
    return None if any(a is None for a in parts.values()) else JointInput(parts)


def _joint_held_out(cfg: JointEncoderConfig, data, idx, paraphrase: bool) -> list:
    parts = {p.name: kind_of(p.encoder).held_out(p.encoder, data, idx, paraphrase) for p in cfg.parts}
    return [{k: v[j] for k, v in parts.items()} for j in range(len(idx))]


def _joint_from_dict(data: dict, read, build) -> JointEncoderConfig:
    parts = []
    for p in data.get("parts", ()):
        p = dict(p)
        p["encoder"] = read(p["kind"], p["encoder"])
        parts.append(build(EncoderPart, p))
    return build(JointEncoderConfig, {"parts": parts})


def _parse_joint(value: str, flag: str) -> dict:
    raise ConditionError(f"{flag}: a joint modality reads several conditions; give each part on its own "
                         "(--cond PART=VALUE, e.g. --mask m.png --attributes male)")


JOINT = ConditionKind(
    name="joint", modality="joint", reads="joint", config=JointEncoderConfig, encoder=JointEncoder,
    adapter=_joint_adapter, parts=_joint_parts, from_dict=_joint_from_dict,
    train_input=lambda batch, cfg: {p.name: kind_of(p.encoder).train_input(batch, p.encoder) for p in cfg.parts},
    held_out=_joint_held_out, parse=_parse_joint,
    example=lambda cfg, b, g: {p.name: kind_of(p.encoder).example(p.encoder, b, g) for p in cfg.parts})

BUILTIN = (TEXT, PRETRAINED_TEXT, MASK, MASK_GRID, ATTRIBUTES, JOINT)
for _kind in BUILTIN:
    register(_kind)
