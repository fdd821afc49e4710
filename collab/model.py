"""The collaborative model: a VAE plus, per modality, a collaborator, its encoder and its diffuser.

Modalities are data (a ModuleDict entry per name); nothing here branches on a modality's name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from collab.conditions import ConditionInput, input_for
from collab.config import ModelConfig
from collab.encoders import build_encoder
from collab.schedule import DiffusionSchedule
from collab.tokenizer import WordPieceTokenizer
from collab.unet import UNetModel
from collab.vae import AutoencoderKL


def native_low_precision(dtype: torch.dtype, device: torch.device) -> bool:
    """Does this device do `dtype` arithmetic in hardware (rather than emulating it slowly)?"""
    if device.type == "cuda":
        return True
    if dtype == torch.bfloat16:
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if dtype == torch.float16:
        return torch.cpu._is_amx_fp16_supported()
    return dtype == torch.float32


class CollaborativeModel(nn.Module):
    """Load with `CollaborativeModel.from_pretrained("demo" | DIR | hub id | .ckpt)`, ready to encode
    and sample; `save_pretrained(DIR)` writes a model folder. A model built from a config encodes
    every condition at once, except WordPiece text, which needs `tokenizer=` (loading brings it)."""

    def __init__(self, cfg: ModelConfig, tokenizer: WordPieceTokenizer | None = None) -> None:
        super().__init__()
        self.config = cfg
        self.vae = AutoencoderKL(cfg.vae)
        self.collaborators = nn.ModuleDict({m.name: UNetModel(m.collaborator) for m in cfg.modalities})
        self.encoders = nn.ModuleDict({m.name: build_encoder(m.kind, m.encoder) for m in cfg.modalities})
        self.diffusers = nn.ModuleDict({m.name: UNetModel(m.diffuser) for m in cfg.modalities if m.diffuser})
        self.schedule = DiffusionSchedule.linear(cfg.timesteps, cfg.linear_start, cfg.linear_end)
        self._inputs: dict[str, ConditionInput] | None = None  # raw-input adapters, made on first use
        self.tokenizer = tokenizer  # travels with the model: save_pretrained writes its vocabulary

    # ------------------------------------------------------------ loading and saving

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path = "demo", *, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, optimize: bool = True, **kwargs: Any) -> CollaborativeModel:
        """A registry name ("demo", "official_256", ...), a model folder, a Hub id or official .ckpt
        files (`ckpt=[...]`), ready to use: its tokenizer comes with it, and with `optimize` the speed
        switches of `optimize_for(device)` are on. Other keywords as `collab.registry.load_model`."""
        from collab.registry import load_model

        return load_model(path_or_name, device=device, dtype=dtype, optimize=optimize, **kwargs)

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> Path:
        """Write a model folder that `from_pretrained` reads back (`collab.checkpoint.save_pretrained`)."""
        from collab.checkpoint import save_pretrained

        return save_pretrained(self, directory, **kwargs)

    # ------------------------------------------------------------ conditions

    def attach_tokenizer(self, tokenizer: WordPieceTokenizer | None) -> CollaborativeModel:
        """Set up the raw-input adapters (the text ones need a tokenizer, read from disk by the loader)."""
        self.tokenizer = tokenizer
        self._inputs = {}
        for m in self.config.modalities:
            adapter = input_for(m.kind, m.encoder, tokenizer)
            if adapter is not None:
                self._inputs[m.name] = adapter
        return self

    @property
    def inputs(self) -> dict[str, ConditionInput]:
        """Raw input adapter per modality (made from the config and tokenizer when first asked)."""
        if self._inputs is None:
            self.attach_tokenizer(self.tokenizer)
        return self._inputs

    @property
    def names(self) -> tuple[str, ...]:
        return self.config.names

    @property
    def device(self) -> torch.device:
        return self.vae.quant_conv.weight.device

    def prepare(self, name: str, raws: Sequence[Any]) -> torch.Tensor | dict[str, torch.Tensor]:
        """Raw conditions of one modality -> encoder input on the model's device."""
        if name not in self.inputs:
            raise ValueError(f"modality {name!r} has no input adapter"
                             + (" (no tokenizer vocabulary was found)" if name in self.names else
                                f"; this model has {', '.join(self.names)}"))
        x = self.inputs[name].prepare(raws)
        return {k: v.to(self.device) for k, v in x.items()} if isinstance(x, dict) else x.to(self.device)

    @torch.no_grad()
    def encode_condition(self, name: str, raws: Sequence[Any]) -> torch.Tensor:
        """Raw conditions -> cross-attention context [B, L, D]."""
        encoder = self.encoders[name]
        ctx = encoder(self.prepare(name, raws))
        return ctx.to(self.collaborators[name].dtype)

    # ------------------------------------------------------------ latents

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [-1, 1] (float32)."""
        return self.vae.decode(z / self.config.scale_factor)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False) -> torch.Tensor:
        """Images in [-1, 1] -> scaled latents (posterior mean unless `sample`)."""
        post = self.vae.encode(images.to(self.device))
        z = post.sample(generator) if sample else post.mean
        return z * self.config.scale_factor

    def set_precision(self, dtype: torch.dtype, compute_dtype: torch.dtype | None = None) -> CollaborativeModel:
        """Store the UNets' weights in `dtype` (encoders and VAE stay float32: they run once per image).

        By default a reduced precision computes natively where the hardware has it (CUDA; CPUs with
        AVX512-BF16 / AMX) and otherwise keeps the low-precision weights but computes in float32,
        layer by layer ("weight-only"): half the memory at nearly float32 speed and accuracy.
        """
        if compute_dtype is None and dtype != torch.float32 and not native_low_precision(dtype, self.device):
            compute_dtype = torch.float32
        for part in (self.collaborators, self.diffusers):
            part.to(dtype)
            for net in part.values():
                net.compute_dtype = compute_dtype
        return self

    def optimize_for(self, device: str | torch.device | None = None) -> CollaborativeModel:
        """The speed switches for running on `device` (default: where the model is), turned on
        explicitly; they change how the model computes, not what (equal up to float rounding).

        CPU: the UNets' weights channels-last (oneDNN's fast convolution layout, about 1.5x at 256
        shapes; it also makes the transformers' token reshapes free). Eager execution is kept: the
        TorchScript traces used before are deprecated, and `torch.compile` costs minutes before the
        first image on a small CPU for a 10-20% gain after it (README, "Speed and memory").
        `load_model` calls this.
        """
        device = torch.device(device) if device is not None else self.device
        return self.use_channels_last(device.type == "cpu")

    def with_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> UNetModel:
        """A new collaborator module for `name` that uses `tensors` where given and shares every other
        tensor with the loaded model (no copy). The shared model is not touched, so any number of
        these can exist and run at once (e.g. two users' edits)."""
        net = self.collaborators[name]
        with torch.device("meta"):
            clone = UNetModel(net.config)
        state = dict(net.state_dict(keep_vars=True))
        unknown = sorted(set(tensors) - set(state))
        if unknown:
            raise KeyError(f"{name}: no such collaborator tensors {unknown[:5]}")
        state.update(tensors)
        clone.load_state_dict(state, strict=True, assign=True)
        clone.compute_dtype = net.compute_dtype
        return clone.eval().requires_grad_(False)

    def run(self, part: str, name: str, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
            net: torch.nn.Module | None = None) -> torch.Tensor:
        """collaborators[name] or diffusers[name] (or `net` standing in for it) on (x_t, t, context)."""
        if net is not None:
            return net(x_t, t, context)
        return getattr(self, part)[name](x_t, t, context)

    def use_channels_last(self, enabled: bool = True) -> CollaborativeModel:
        """NHWC weights for the UNets: oneDNN's fast convolution layout on CPU (about 1.5x at 256
        shapes), and it makes the transformers' token reshapes free. Numerically the same maths."""
        fmt = torch.channels_last if enabled else torch.contiguous_format
        for part in (self.collaborators, self.diffusers):
            part.to(memory_format=fmt)
        return self

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        c = self.config
        return (batch, c.latent_channels, c.latent_size, c.latent_size)
