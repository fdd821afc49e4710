"""Shared test helpers: the golden fixtures and tiny random models that build in milliseconds."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from collab.config import ModalityConfig, ModelConfig
from collab.encoders import MaskEncoderConfig, TextEncoderConfig
from collab.model import CollaborativeModel
from collab.tokenizer import WordPieceTokenizer
from collab.unet import UNetConfig
from collab.vae import VAEConfig

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "reference"
VOCAB = REFERENCE / "bert-base-uncased-vocab.txt"

TINY_UNET = UNetConfig(in_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                       attention_resolutions=(2,), context_dim=16, num_heads=2, legacy=False, image_size=8)
TINY_DIFFUSER = replace(TINY_UNET, out_channels=1)
TINY_VAE = VAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, resolution=16)


def tiny_config(kinds: dict[str, str] | None = None, layout: tuple[str, ...] = ("mask",), diffusers: bool = True,
                default_rule: str = "paper") -> ModelConfig:
    """A ModelConfig with one modality per entry of `kinds` (name -> input kind)."""
    kinds = kinds or {"mask": "mask", "text": "text"}
    mods = []
    for name, kind in kinds.items():
        mods.append(ModalityConfig(name, kind, TINY_UNET, tiny_encoder(kind), TINY_DIFFUSER if diffusers else None,
                                   name in layout, "seg_mask" if name == "mask" else name))
    return ModelConfig(name="tiny", vae=TINY_VAE, modalities=tuple(mods), scale_factor=0.5, latent_size=8,
                       default_rule=default_rule)


def tiny_encoder(kind: str):
    """A 16-wide encoder config of any kind (face-world attribute names for "attributes"; the joint
    kind concatenates attributes and a grid-token mask, like the shipped joint baseline)."""
    from collab.data.faceworld import BINARY_ATTRIBUTES
    from collab.encoders import AttributeEncoderConfig, EncoderPart, GridMaskEncoderConfig, JointEncoderConfig

    if kind == "text":
        return TextEncoderConfig(n_embed=16, n_layer=1)
    if kind == "attributes":
        return AttributeEncoderConfig(names=BINARY_ATTRIBUTES, context_dim=16, hidden=16, tokens=2)
    if kind == "mask_grid":
        return GridMaskEncoderConfig(context_dim=16, width=8, grid=4)
    if kind == "joint":
        return JointEncoderConfig(parts=(EncoderPart("attributes", "attributes", tiny_encoder("attributes")),
                                         EncoderPart("mask", "mask_grid", tiny_encoder("mask_grid"))))
    return MaskEncoderConfig(context_dim=16)


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter (zero-initialised layers too, so no path hides behind zeros)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim > 1:
                bound = 1.0 / p[0].numel() ** 0.5
                p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g) + (1.0 if torch.all(p == 1) else 0.0))
    return module


def tiny_model(cfg: ModelConfig | None = None, seed: int = 0) -> CollaborativeModel:
    model = randomize(CollaborativeModel(cfg or tiny_config()), seed).eval().requires_grad_(False)
    return model.attach_tokenizer(WordPieceTokenizer.from_vocab_file(VOCAB))


@pytest.fixture(scope="session")
def tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer.from_vocab_file(VOCAB)


@pytest.fixture()
def model() -> CollaborativeModel:
    return tiny_model()


@pytest.fixture()
def one_thread():
    """Small models are overhead-bound: one intra-op thread is faster, and stays fast on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
