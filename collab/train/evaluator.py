"""Train the evaluator (face parser + attribute classifier) on face-world renders, on the engine.

    python -m collab.train.evaluator --out checkpoints/evaluator [--steps 3000] [--size 128] [--workers 2]

Generated images are smoother than renders (they come through a VAE), so training images are
augmented with blur, noise and colour jitter, and, when `--vae` names a collab model directory,
half of the batches get half their images replaced by that model's VAE reconstructions (labels
unchanged). Faces are rendered by DataLoader workers; the run resumes from <out>/evaluator.ckpt.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from collab.evaluator import (ATTRIBUTE_HEADS, AttributeClassifier, ClassifierConfig, Evaluator, FaceParser,
                              ParserConfig, to_input,
                              attribute_targets, confusion, miou)

HEADS = ATTRIBUTE_HEADS


def render_batch(seeds: list[int], size: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    from collab.data.faceworld import render

    samples = [render(s, size) for s in seeds]
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels = torch.from_numpy(np.stack([s.labels for s in samples])).long()
    targets = [attribute_targets(s.attributes) for s in samples]
    return images, labels, {k: torch.tensor([t[k] for t in targets]) for k in HEADS}


def augment(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Blur, noise and colour jitter, each with probability 1/2 per image (draws from the CPU
    generator `g`, applied on the images' device)."""
    b, dev = images.shape[0], images.device
    out = images.clone()
    blur = (torch.rand(b, generator=g) < 0.5).to(dev)
    if blur.any():
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        k = (k[:, None] * k[None]) / 256.0
        weight = k.expand(3, 1, 5, 5).to(dev, out.dtype)
        out[blur] = F.conv2d(F.pad(out[blur], (2, 2, 2, 2), mode="replicate"), weight, groups=3)
    noisy = (torch.rand(b, generator=g) < 0.5)[:, None, None, None].to(dev)
    out = out + noisy * 0.05 * torch.randn(out.shape, generator=g).to(dev)
    scale = 1 + 0.1 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5).to(dev)
    shift = 0.1 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5).to(dev)
    return (out * scale + shift).clamp(-1, 1)


class RenderDataset(torch.utils.data.Dataset):
    """Face `i` is the render of seed `seed_of(i)`: fresh faces, rendered by the DataLoader's workers."""

    def __init__(self, size: int, seed: int, count: int = 5_000_000) -> None:
        self.size, self.seed, self.count = size, seed, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        seed = int(np.random.default_rng([self.seed, index]).integers(0, 5_000_000))
        images, labels, targets = render_batch([seed], self.size)
        return {"index": torch.tensor(index), "image": images[0], "labels": labels[0],
                **{f"target_{k}": v[0] for k, v in targets.items()}}


@torch.no_grad()
def evaluate(ev: Evaluator, seeds: list[int], size: int) -> dict[str, float]:
    images, labels, targets = render_batch(seeds, size)
    conf = confusion(ev.parse(images), labels.numpy())
    preds = ev.attributes(images)
    acc = {f"acc_{k}": float((torch.from_numpy(preds[k]) == targets[k]).float().mean()) for k in HEADS}
    return {"miou": miou(conf), **acc}


def load_vae(source: str) -> torch.nn.Module:
    """The VAE of a collab model directory, or a bare demo-recipe VAE state file (`vae.pt` of a run)."""
    if str(source).endswith(".pt"):
        from collab.config import load_config
        from collab.vae import AutoencoderKL

        vae = AutoencoderKL(load_config("demo").vae)
        vae.load_state_dict(torch.load(source, weights_only=True, map_location="cpu"))
        return vae.eval().requires_grad_(False)
    from collab.checkpoint import load_pretrained

    return load_pretrained(source).vae


def class_weights(size: int, n: int = 64, power: float = 0.5, cap: float = 10.0) -> torch.Tensor:
    """Per-class weights of the parser loss, (median frequency / frequency)^power, from `n` renders:
    without them the small parts (eyes, brows, earrings) are drowned by background and skin."""
    _, labels, _ = render_batch(list(range(20_000_000, 20_000_000 + n)), size)
    freq = torch.bincount(labels.flatten(), minlength=19).float() / labels.numel()
    present = freq > 0
    w = torch.ones(19)
    w[present] = (freq[present].median() / freq[present]) ** power
    return w.clamp(1.0 / cap, cap)


def train(out: Path, steps: int, size: int, batch: int, lr: float, seed: int, vae_model: str | None,
          log_every: int = 100, init: str | None = None, classifier_size: int | None = None, engine=None,
          loop=None, workers: int = 0) -> dict[str, float]:
    """Train on the engine (default: one CPU process); `loop` (a LoopConfig, e.g. a recipe's
    `evaluator` stage) overrides steps / batch / lr / seed when given."""
    from collab.train.engine import Engine, EngineConfig
    from collab.train.loop import LoopConfig, apply_weights
    from collab.train.loop import train as train_loop

    engine = engine or Engine(EngineConfig(accelerator="cpu"), out)
    loop = loop or LoopConfig(steps=steps, lr=lr, batch_size=batch, seed=seed, warmup=max(1, steps // 20),
                              schedule="cosine", weight_decay=1e-4, grad_clip=0.0, log_every=log_every)
    torch.manual_seed(loop.seed)
    # Small enough to train in well under an hour on 2 CPU cores; both nets see full resolution
    # (thin parts: lips, brows, earrings; age and beard are fine textures).
    ev = Evaluator(FaceParser(ParserConfig(widths=(16, 32, 64, 128), image_size=size)),
                   AttributeClassifier(ClassifierConfig(widths=(16, 32, 64, 128), heads=dict(HEADS),
                                                        image_size=classifier_size or size)))
    if init:  # warm start (e.g. after adding heads): every tensor whose name and shape match
        old = Evaluator.load(init)
        for new_net, old_net in ((ev.parser, old.parser), (ev.classifier, old.classifier)):
            mine = new_net.state_dict()
            mine.update({k: v for k, v in old_net.state_dict().items() if k in mine and mine[k].shape == v.shape})
            new_net.load_state_dict(mine)
    weights = class_weights(size).to(engine.device)
    vae = load_vae(vae_model).to(engine.device) if vae_model else None
    ev.parser.train(), ev.classifier.train()

    def loss_fn(b, g):
        images = b["image"]
        if vae is not None and bool(torch.rand(1, generator=g) < 0.5):
            with torch.no_grad():
                half = images.shape[0] // 2
                images = torch.cat([vae.decode(vae.encode(images[:half]).mean).clamp(-1, 1), images[half:]])
        images = augment(images, g)
        loss_parse = F.cross_entropy(ev.parser(images), b["labels"], weight=weights)
        logits = ev.classifier(to_input(images, ev.classifier.config.image_size)[0])
        return loss_parse + sum(F.cross_entropy(logits[k], b[f"target_{k}"]) for k in HEADS)

    nets = {"parser": ev.parser, "classifier": ev.classifier}
    final = train_loop(engine, out, "evaluator", nets, loss_fn, RenderDataset(size, loop.seed), loop,
                       workers=workers)
    apply_weights(nets, final)
    ev.parser.cpu().eval().requires_grad_(False), ev.classifier.cpu().eval().requires_grad_(False)
    metrics = {}
    if engine.is_main:
        metrics = evaluate(ev, list(range(10_000_000, 10_000_000 + 200)), size)  # seeds never trained on
        ev.save(out)
        (out / "evaluator_metrics.json").write_text(json.dumps(metrics, indent=1))
    engine.barrier()
    return metrics


def main(argv: list[str] | None = None) -> None:
    from collab.train.engine import Engine, add_engine_args, engine_config_from_args

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--init", help="warm-start from this evaluator directory (tensors of matching shape)")
    ap.add_argument("--classifier-size", type=int, default=None, help="classifier input size (default: --size)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vae", help="collab model directory (or a demo run's vae.pt) whose VAE reconstructions are mixed in")
    add_engine_args(ap, default_accelerator="cpu", default_logger="none")
    args = ap.parse_args(argv)
    engine = Engine(engine_config_from_args(args), args.out)
    metrics = train(args.out, args.steps, args.size, args.batch_size, args.lr, args.seed, args.vae,
                    init=args.init, classifier_size=args.classifier_size, engine=engine, workers=args.workers or 0)
    if engine.is_main:
        print(json.dumps(metrics))


if __name__ == "__main__":
    main()
