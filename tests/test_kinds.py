"""The condition-kind registry: a new kind is one module that registers itself.

The toy "sketch" kind below lives in this file only: its config, encoder, input adapter and data
providers. Registered, it reads from a YAML-style config, builds, encodes, samples, saves and loads,
matches raw inputs and comes from the command line, with no other file touched.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from torch import nn

from collab import kinds
from collab.conditions import ConditionError
from collab.config import config_from_dict, config_to_dict
from collab.matching import match_conditions
from collab.pipeline import generate
from tests.conftest import tiny_config, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class SketchEncoderConfig:
    context_dim: int = 16
    side: int = 8  # sketches are read as side x side strokes


class SketchEncoder(nn.Module):
    """Strokes [B, side, side] -> one context token per row [B, side, context_dim]."""

    def __init__(self, cfg: SketchEncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.rows = nn.Linear(cfg.side, cfg.context_dim)

    @property
    def context_dim(self) -> int:
        return self.config.context_dim

    def forward(self, strokes: torch.Tensor) -> torch.Tensor:
        return self.rows(strokes.float())


@dataclass
class SketchInput:
    side: int
    kind: str = "sketch"

    def prepare(self, raws) -> torch.Tensor:
        out = []
        for raw in raws:
            a = torch.as_tensor(np.asarray(raw, dtype=np.float32))
            if a.ndim != 2:
                raise ConditionError(f"a sketch is a 2-D array of strokes, got shape {tuple(a.shape)}")
            out.append(nn.functional.interpolate(a[None, None], (self.side, self.side), mode="area")[0, 0])
        return torch.stack(out)


def _parse(value: str, flag: str) -> np.ndarray:
    return np.load(value)  # a .npy of strokes


SKETCH = kinds.ConditionKind(
    name="sketch", modality="sketch", reads="sketch", config=SketchEncoderConfig, encoder=SketchEncoder,
    adapter=lambda cfg, tok: SketchInput(cfg.side), train_input=lambda batch, cfg: batch["sketch"],
    held_out=lambda cfg, data, idx, paraphrase: [data.sketches[i] for i in idx], parse=_parse,
    example=lambda cfg, b, g: torch.rand((b, cfg.side, cfg.side), generator=g),
    widget=lambda cfg: kinds.Widget("none"), help="a .npy of strokes")


@pytest.fixture()
def sketch():
    kinds.register(SKETCH)
    kinds.register(SKETCH)  # idempotent
    yield SKETCH
    kinds.unregister("sketch")


def _config_with_sketch():
    """The tiny mask + text config plus a sketch modality, through the YAML reader."""
    data = config_to_dict(tiny_config())
    sketch = {**data["modalities"][0], "name": "sketch", "kind": "sketch", "leads_early": False, "official_name": None,
              "encoder": {"kind": "sketch", "context_dim": 16, "side": 8}}
    data["modalities"].append(sketch)
    return config_from_dict(data)


def test_a_new_kind_is_one_registration(sketch, tmp_path):
    cfg = _config_with_sketch()
    assert cfg.modality("sketch").encoder == SketchEncoderConfig(16, 8)
    assert config_from_dict(config_to_dict(cfg)) == cfg  # written with its kind, read back
    model = tiny_model(cfg)
    assert isinstance(model.encoders["sketch"], SketchEncoder)
    strokes = np.zeros((32, 32), np.float32)
    strokes[8:24, 15:17] = 1.0
    ctx = model.encode_condition("sketch", [strokes])
    assert ctx.shape == (1, 8, 16) and ctx[0, 3].abs().sum() > 0
    text = "A man with a beard."
    result = generate(model, {"sketch": strokes, "text": text}, steps=2, seed=0)
    assert result.images.shape == (1, 16, 16, 3) and result.settings.modalities == ("text", "sketch")
    other = generate(model, {"sketch": 1.0 - strokes, "text": text}, steps=2, seed=0)
    assert not np.array_equal(result.images, other.images)  # the sketch reaches the images
    alone = generate(model, {"sketch": strokes}, steps=2, seed=0)
    assert alone.settings.modalities == ("sketch",)

    from collab.checkpoint import load_pretrained, save_pretrained

    back = load_pretrained(save_pretrained(model, tmp_path / "m"))
    assert back.config.modality("sketch").encoder == SketchEncoderConfig(16, 8)
    assert torch.equal(back.encode_condition("sketch", [strokes]), ctx)


def test_the_new_kind_is_matched_and_read_from_the_command_line(sketch, tmp_path, capsys):
    cfg = _config_with_sketch()
    strokes = np.eye(8, dtype=np.float32)
    match = match_conditions(cfg, {"sketch": strokes, "attributes": "male"})
    assert list(match.conditions) == ["sketch"] and match.unread == ("attributes",)

    from collab.checkpoint import save_pretrained
    from collab.cli import main
    from tests.conftest import VOCAB

    model = tiny_model(cfg)
    model.config = replace(model.config, vocab=str(VOCAB))
    folder = save_pretrained(model, tmp_path / "m")
    np.save(tmp_path / "s.npy", strokes)
    assert main(["generate", "--model", str(folder), "--sketch", str(tmp_path / "s.npy"), "--text", "a man",
                 "--steps", "2", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("text+sketch | mode=collaborative")
    assert len(list((tmp_path / "out").glob("*.png"))) == 1


def test_builtin_kinds_and_their_lookups():
    from collab.encoders import MaskEncoderConfig, PretrainedTextEncoderConfig, TextEncoderConfig

    assert {"text", "pretrained_text", "mask", "mask_grid", "attributes", "joint"} <= set(kinds.names())
    assert kinds.kind_of(PretrainedTextEncoderConfig()).modality == "text"  # a variant of text
    assert [k.name for k in kinds.serving("text")][0] == "text"  # the default comes first
    assert kinds.for_modality("text").config is TextEncoderConfig
    assert kinds.kind_of(MaskEncoderConfig()).reads == kinds.get("mask_grid").reads == "mask"
    assert list(kinds.inputs()) == ["text", "mask", "attributes"]
    assert kinds.get("attributes").widget(tiny_config({"a": "attributes"}).modality("a").encoder).control == "checkboxes"
    with pytest.raises(ValueError, match="clashes with the registered kind 'mask'"):
        kinds.register(replace(kinds.get("mask"), help="another"))
    with pytest.raises(TypeError, match="config of no registered condition kind"):
        kinds.kind_of(object())
    g = torch.Generator().manual_seed(0)
    joint = tiny_config({"joint": "joint"}).modality("joint").encoder
    assert set(kinds.kind_of(joint).example(joint, 2, g)) == {"attributes", "mask"}
