"""Condition encoders: text (BERT-style transformer trained with the LDM) and segmentation mask.

Each maps a raw condition to cross-attention context [B, L, context_dim]. Module names follow the
official `BERTEmbedder` (x-transformers `TransformerWrapper`) and `SegMaskEncoder` state_dicts.
"""
from __future__ import annotations

from dataclasses import dataclass

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

