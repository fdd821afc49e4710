"""Train the evaluator (face parser + attribute classifier) on face-world renders.

    python -m collab.train.evaluator --out checkpoints/evaluator [--steps 3000] [--size 128]

Generated images are smoother than renders (they come through a VAE), so training images are
augmented with blur, noise and colour jitter, and, when `--vae` names a collab model directory,
half of each batch is replaced by that model's VAE reconstructions (labels unchanged).
"""
from __future__ import annotations

import argparse
import json
import time
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
    """Blur, noise and colour jitter, each with probability 1/2 per image."""
    b = images.shape[0]
    out = images.clone()
    blur = torch.rand(b, generator=g) < 0.5
    if blur.any():
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        k = (k[:, None] * k[None]) / 256.0
        weight = k.expand(3, 1, 5, 5)
        out[blur] = F.conv2d(F.pad(out[blur], (2, 2, 2, 2), mode="replicate"), weight, groups=3)
    noisy = (torch.rand(b, generator=g) < 0.5)[:, None, None, None]
    out = out + noisy * 0.05 * torch.randn(out.shape, generator=g)
    scale = 1 + 0.1 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5)
    shift = 0.1 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5)
    return (out * scale + shift).clamp(-1, 1)


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
          log_every: int = 100, init: str | None = None, classifier_size: int | None = None) -> dict[str, float]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
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
    weights = class_weights(size)
    vae = None
    if vae_model:
        vae = load_vae(vae_model)
    params = list(ev.parser.parameters()) + list(ev.classifier.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    held_out = list(range(10_000_000, 10_000_000 + 200))  # seeds never used for training
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "evaluator_log.jsonl").open("a")
    t0 = time.time()
    for step in range(1, steps + 1):
        seeds = torch.randint(0, 5_000_000, (batch,), generator=g).tolist()
        images, labels, targets = render_batch(seeds, size)
        if vae is not None and step % 2 == 0:
            with torch.no_grad():
                half = batch // 2
                images[:half] = vae.decode(vae.encode(images[:half]).mean).clamp(-1, 1)
        images = augment(images, g)
        ev.parser.train(), ev.classifier.train()
        loss_parse = F.cross_entropy(ev.parser(images), labels, weight=weights)
        logits = ev.classifier(to_input(images, ev.classifier.config.image_size)[0])
        loss_attr = sum(F.cross_entropy(logits[k], targets[k]) for k in HEADS)
        loss = loss_parse + loss_attr
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite evaluator loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps:
            rec = {"step": step, "loss_parse": loss_parse.item(), "loss_attr": loss_attr.item(),
                   "seconds": round(time.time() - t0, 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
    ev.parser.eval(), ev.classifier.eval()
    ev.parser.requires_grad_(False), ev.classifier.requires_grad_(False)
    metrics = evaluate(ev, held_out, size)
    ev.save(out)
    (out / "evaluator_metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def main() -> None:
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
    args = ap.parse_args()
    metrics = train(args.out, args.steps, args.size, args.batch_size, args.lr, args.seed, args.vae,
                    init=args.init, classifier_size=args.classifier_size)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
