"""Condition kinds: one registry entry per kind says everything the rest of the code asks of it.

A kind (text, mask, attributes, ...) is a `ConditionKind`: its encoder's config class and builder,
the adapter from raw user conditions to encoder input, where its data comes from for training and
for evaluation, how a command-line string becomes a raw condition, and which widget the app shows.
Configs name the kind of each encoder (`encoder: {kind: pretrained_text, ...}`; the modality's own
`kind:` when absent), and every other module looks the kind up here instead of switching on it, so
a new kind is one module that calls `register(...)` once (see `tests/test_kinds.py`).

The registry is a module-level dict (the one piece of global state): the built-in kinds
(`collab.builtin_kinds`) are registered explicitly on first lookup, and `register` is idempotent
(the same entry again is a no-op; another entry under a taken name is an error).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn


@dataclass(frozen=True)
class Widget:
    """How the app asks for a condition: "textbox", "mask" (painter + upload) or "checkboxes"
    (with `choices`); a kind the app has no widget for says so in `control` ("none")."""

    control: str
    choices: tuple[str, ...] = ()


def _no_parts(cfg: Any) -> tuple:
    return ()


@dataclass(frozen=True)
class ConditionKind:
    name: str  # the encoder kind, as configs name it: "text", "pretrained_text", "mask", ...
    modality: str  # the modality `kind:` it serves ("text" for "pretrained_text": a variant of text)
    reads: str  # the raw input it reads, as the CLI flag, the app and matching call it: "text", "mask", ...
    config: type  # its encoder's config dataclass
    encoder: Callable[[Any], nn.Module]  # config -> encoder module
    adapter: Callable[[Any, Any], Any]  # (config, WordPiece tokenizer or None) -> ConditionInput, or None
    train_input: Callable[[Mapping[str, Any], Any], Any]  # (training batch, config) -> encoder input
    held_out: Callable[[Any, Any, Any, bool], list]  # (config, eval HeldOut, indices, paraphrase) -> raws
    parse: Callable[[str, str], Any]  # (command-line string, flag name for errors) -> raw condition
    example: Callable[[Any, int, torch.Generator], Any]  # (config, batch, generator) -> a random encoder input
    widget: Callable[[Any], Widget] = lambda cfg: Widget("none")  # noqa: E731 (config -> its widget)
    parts: Callable[[Any], tuple] = _no_parts  # config -> ((part name, part kind, part config), ...)
    # (YAML section, read a part's section (modality kind, section), build a dataclass) -> config, for
    # configs that nest other encoders; None: the section's fields are the config class's
    from_dict: Callable[[dict, Callable, Callable], Any] | None = None
    needs_vocab: bool = False  # its adapter reads the model's WordPiece vocabulary
    frozen_backbone: bool = False  # its encoder input can be cached as a frozen backbone's states
    help: str = ""  # one line for --help: what a value looks like

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.config):
            raise TypeError(f"condition kind {self.name!r}: config must be a dataclass, got {self.config!r}")


_KINDS: dict[str, ConditionKind] = {}
_BY_CONFIG: dict[type, ConditionKind] = {}


def register(kind: ConditionKind) -> ConditionKind:
    """Add `kind`; registering the same entry again does nothing, a different one under a taken
    name (or for a taken config class) is an error."""
    for taken in (_KINDS.get(kind.name), _BY_CONFIG.get(kind.config)):
        if taken is not None and taken != kind:
            raise ValueError(f"condition kind {kind.name!r} ({kind.config.__name__}) clashes with the registered "
                             f"kind {taken.name!r} ({taken.config.__name__})")
    _KINDS[kind.name] = _BY_CONFIG[kind.config] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind (tests that register a toy kind put the registry back as it was)."""
    kind = _KINDS.pop(name, None)
    if kind is not None:
        _BY_CONFIG.pop(kind.config, None)


def _builtins() -> None:
    import collab.builtin_kinds  # noqa: F401 (registers the built-in kinds on first import)


def names() -> tuple[str, ...]:
    _builtins()
    return tuple(_KINDS)


def get(name: str) -> ConditionKind:
    _builtins()
    if name not in _KINDS:
        raise ValueError(f"unknown condition kind {name!r}; known kinds: {', '.join(_KINDS)}")
    return _KINDS[name]


def kind_of(encoder_config: Any) -> ConditionKind:
    """The kind an encoder config belongs to (by its class)."""
    _builtins()
    kind = _BY_CONFIG.get(type(encoder_config))
    if kind is None:
        raise TypeError(f"{type(encoder_config).__name__} is the config of no registered condition kind; "
                        f"known: {', '.join(k.config.__name__ for k in _KINDS.values())}")
    return kind


def for_modality(modality_kind: str, encoder_kind: str | None = None) -> ConditionKind:
    """The encoder kind of a modality of `modality_kind`: `encoder_kind` when the config names one
    (it must serve that modality kind), else the kind of the same name."""
    allowed = serving(modality_kind)
    kind = get(encoder_kind) if encoder_kind is not None else allowed[0]
    if kind not in allowed:
        raise ValueError(f"an encoder of kind {kind.name!r} serves {kind.modality!r} modalities, not "
                         f"{modality_kind!r}; encoder kinds for {modality_kind!r}: {', '.join(k.name for k in allowed)}")
    return kind


def modality_kinds() -> tuple[str, ...]:
    _builtins()
    return tuple(dict.fromkeys(k.modality for k in _KINDS.values()))


def serving(modality_kind: str) -> tuple[ConditionKind, ...]:
    """The encoder kinds a modality of `modality_kind` may have (the default, of the same name, first)."""
    _builtins()
    found = sorted((k for k in _KINDS.values() if k.modality == modality_kind), key=lambda k: k.name != modality_kind)
    if not found:
        raise ValueError(f"unknown condition kind {modality_kind!r}; known kinds: {', '.join(modality_kinds())}")
    return tuple(found)


def inputs() -> dict[str, ConditionKind]:
    """One kind per raw input name (the first registered reading it): what the CLI offers as
    `--text`, `--mask`, ... Kinds with parts (joint) read no input of their own."""
    _builtins()
    out: dict[str, ConditionKind] = {}
    for k in _KINDS.values():
        if k.parts is _no_parts:
            out.setdefault(k.reads, k)
    return out


def build_encoder(modality_kind: str, encoder_config: Any) -> nn.Module:
    """The encoder of a modality of `modality_kind` from its config (which must be of a kind serving it)."""
    allowed = serving(modality_kind)
    kind = _BY_CONFIG.get(type(encoder_config))
    if kind not in allowed:
        names = " or ".join(k.config.__name__ for k in allowed)
        raise TypeError(f"kind {modality_kind!r} needs a {names}, got {type(encoder_config).__name__}")
    return kind.encoder(encoder_config)
