"""The evaluator: a face parser (19 classes) and an attribute classifier, plus the metrics built on them.

Trained on the project's face world (no weights can be downloaded here); the metric functions take
any parser / feature extractor, so users with CelebA-trained ones can plug them in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from collab.classes import NUM_CLASSES

# Heads of the attribute classifier: what a face-world caption states (gender, age level, beard level),
# then the yes/no attributes of the attribute modality that the caption does not carry.
CAPTION_HEADS = {"gender": 2, "age": 6, "beard": 5}
FLAG_HEADS = ("smiling", "mouth_open", "bangs", "eyeglasses", "hat", "earrings", "necklace", "bald")
ATTRIBUTE_HEADS = CAPTION_HEADS | {k: 2 for k in FLAG_HEADS}


def attribute_targets(attrs) -> dict[str, int]:
    """Class indices of the classifier heads for one face-world attribute record."""
    flags = {k: int(getattr(attrs, k)) for k in FLAG_HEADS if k != "bald"}
    return {"gender": int(attrs.gender == "man"), "age": int(attrs.age), "beard": int(attrs.beard),
            **flags, "bald": int(attrs.hair_style == "bald")}


def binary_attributes(preds: dict[str, np.ndarray]) -> np.ndarray:
    """Head predictions -> [N, len(BINARY_ATTRIBUTES)] 0/1 vectors in the order of the face world's
    attribute modality (same thresholds as `FaceAttributes.to_binary_vector`)."""
    from collab.data.faceworld import BINARY_ATTRIBUTES

    derived = {"male": preds["gender"] == 1, "young": preds["age"] <= 1, "old": preds["age"] >= 4,
               "beard": preds["beard"] >= 1}
    return np.stack([derived[k] if k in derived else preds[k] == 1 for k in BINARY_ATTRIBUTES], 1).astype(np.float32)

# ---------------------------------------------------------------- networks


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


@dataclass(frozen=True)
class ParserConfig:
    widths: tuple[int, ...] = (32, 64, 128, 192)
    num_classes: int = NUM_CLASSES
    image_size: int = 128


class FaceParser(nn.Module):
    """A small U-Net: image [B, 3, H, W] in [-1, 1] -> class logits [B, 19, H, W]."""

    def __init__(self, cfg: ParserConfig) -> None:
        super().__init__()
        self.config = cfg
        w = cfg.widths
        self.down = nn.ModuleList([_block(3 if i == 0 else w[i - 1], w[i]) for i in range(len(w))])
        self.up = nn.ModuleList([_block(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1))])
        self.head = nn.Conv2d(w[0], cfg.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for block in self.up:
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()], dim=1))
        return self.head(x)


@dataclass(frozen=True)
class ClassifierConfig:
    widths: tuple[int, ...] = (32, 64, 128, 256)
    heads: dict[str, int] = field(default_factory=lambda: dict(ATTRIBUTE_HEADS))
    image_size: int = 128

    def __hash__(self) -> int:
        return hash((self.widths, tuple(self.heads.items()), self.image_size))


class AttributeClassifier(nn.Module):
    """Image -> logits per attribute head, and a feature vector (for Fréchet distance, diversity)."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        self.config = cfg
        w = cfg.widths
        self.trunk = nn.Sequential(*[nn.Sequential(_block(3 if i == 0 else w[i - 1], w[i]), nn.MaxPool2d(2))
                                     for i in range(len(w))])
        self.heads = nn.ModuleDict({name: nn.Linear(w[-1], n) for name, n in cfg.heads.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)
        return {name: head(f) for name, head in self.heads.items()}


# ---------------------------------------------------------------- the pair, saved together


@dataclass
class Evaluator:
    parser: FaceParser
    classifier: AttributeClassifier

    @torch.no_grad()
    def parse(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 [B, H, W, 3] (or [-1, 1] tensors) -> labels uint8 [B, H, W] at the input size."""
        x, size = to_input(images, self.parser.config.image_size)
        logits = self.parser(x)
        if logits.shape[-1] != size:
            logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        return logits.argmax(1).to(torch.uint8).numpy()

    @torch.no_grad()
    def attributes(self, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """Predicted class index per head."""
        x, _ = to_input(images, self.classifier.config.image_size)
        return {k: v.argmax(1).numpy() for k, v in self.classifier(x).items()}

    @torch.no_grad()
    def features(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        x, _ = to_input(images, self.classifier.config.image_size)
        return self.classifier.features(x).numpy().astype(np.float64)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"parser.{k}": v.contiguous() for k, v in self.parser.state_dict().items()}
        tensors |= {f"classifier.{k}": v.contiguous() for k, v in self.classifier.state_dict().items()}
        save_file(tensors, directory / "evaluator.safetensors")
        cfg = {"parser": {"widths": list(self.parser.config.widths), "image_size": self.parser.config.image_size},
               "classifier": {"widths": list(self.classifier.config.widths), "heads": dict(self.classifier.config.heads),
                              "image_size": self.classifier.config.image_size}}
        (directory / "evaluator.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Evaluator:
        directory = Path(directory)
        cfg = yaml.safe_load((directory / "evaluator.yaml").read_text())
        p = cfg["parser"]
        c = cfg["classifier"]
        parser = FaceParser(ParserConfig(widths=tuple(p["widths"]), image_size=p["image_size"]))
        classifier = AttributeClassifier(ClassifierConfig(widths=tuple(c["widths"]), heads=dict(c["heads"]),
                                                          image_size=c["image_size"]))
        tensors = load_file(directory / "evaluator.safetensors")
        parser.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("parser.")}, strict=True)
        classifier.load_state_dict({k[11:]: v for k, v in tensors.items() if k.startswith("classifier.")}, strict=True)
        return cls(parser.eval().requires_grad_(False), classifier.eval().requires_grad_(False))


def to_input(images: np.ndarray | torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    else:
        x = images.float()
    in_size = x.shape[-1]
    if in_size != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x, in_size


# ---------------------------------------------------------------- metrics (pure functions)


def confusion(pred: np.ndarray, target: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """[C, C] counts, rows = target class, columns = predicted class."""
    idx = target.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def miou(conf: np.ndarray) -> float:
    """Mean IoU over the classes present in the targets or the predictions."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    return float((tp[present] / union[present]).mean()) if present.any() else float("nan")


def pixel_accuracy(conf: np.ndarray) -> float:
    return float(np.diag(conf).sum() / max(conf.sum(), 1))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between Gaussian fits of two feature sets."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # (S_a S_b)^1/2 through the symmetric form S_a^1/2 S_b S_a^1/2, which has real eigenvalues
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    mid = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(np.clip(mid, 0, None)).sum())


def diversity(features: np.ndarray) -> float:
    """Mean pairwise Euclidean distance between samples of the same conditions."""
    n = len(features)
    if n < 2:
        return 0.0
    d = np.sqrt(((features[:, None] - features[None]) ** 2).sum(-1))
    return float(d.sum() / (n * (n - 1)))
