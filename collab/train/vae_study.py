"""The demo VAE study: which first stage keeps what the conditions say (issue: demo model v2).

    python -m collab.train.vae_study --run runs/vae_study            # every variant, resumable
    python -m collab.train.vae_study --run runs/vae_study --only f4c3 --steps 6000

Each variant is a VAE architecture plus a recipe (learning rate, crops or whole faces, loss). All
train on the same rendered world for the same number of steps, then reconstruct the same held-out
renders, which the project's evaluator reads: parser mIoU against the true labels, the caption's
attribute accuracy, and mean absolute pixel error (0-255). Results go to `<run>/study.json` and a
reconstruction grid per variant to `<run>/<variant>/recon.png`. Re-running the same command
continues every unfinished variant from its last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from collab.vae import AutoencoderKL, VAEConfig

# The demo's VAE today: ch 32, f=8, 3 latent channels, 8 norm groups, trained on 64x64 crops.
BASE = VAEConfig(ch=32, ch_mult=(1, 2, 4, 4), num_res_blocks=1, z_channels=3, embed_dim=3, resolution=128,
                 norm_groups=8)
F4 = replace(BASE, ch_mult=(1, 2, 4))


@dataclass(frozen=True)
class Variant:
    name: str
    vae: VAEConfig
    note: str
    lr: float = 4e-4
    batch_size: int = 8
    crop: int = 64  # 0 = whole faces
    adv_weight: float = 0.0  # hinge patch discriminator, adaptive weight as the official first stage
    adv_start: int = 0  # step at which the discriminator starts (the official: after a warm-up)
    l2_weight: float = 0.0  # extra squared error: punishes the large colour errors L1 tolerates

    def describe(self) -> dict:
        d = asdict(self)
        d["latent"] = f"{self.vae.embed_dim}x{128 // self.vae.downsample_factor}^2"
        return d


VARIANTS = (
    # in the order they were run (most informative first)
    Variant("f8c3_crop", BASE, "today's recipe: f=8, 3 channels, 64x64 crops"),
    Variant("f4c3_nonorm_whole", replace(F4, norm_groups=0), "f=4 without normalisation, whole faces",
            batch_size=4),
    Variant("f4c3_nonorm_whole_lr1e3", replace(F4, norm_groups=0), "f=4 without normalisation, learning rate 1e-3",
            batch_size=4, lr=1e-3),
    Variant("f4c3_nonorm_whole_rgb", replace(F4, norm_groups=0, rgb_shortcut=True),
            "f=4 without normalisation + the parameter-free colour path (rgb_shortcut)", batch_size=4),
    Variant("f8c4_nonorm_whole_rgb", replace(BASE, z_channels=4, embed_dim=4, norm_groups=0, rgb_shortcut=True),
            "f=8 (16x16 latents: today's LDM cost), 4 channels, no normalisation, colour path", batch_size=4),
    Variant("f4c3_nonorm_whole_rgb_adv", replace(F4, norm_groups=0, rgb_shortcut=True),
            "f=4, no normalisation, colour path + patch discriminator (hinge, adaptive weight)", batch_size=4,
            adv_weight=0.5, adv_start=300),
    Variant("f8c4_nonorm_whole", replace(BASE, z_channels=4, embed_dim=4, norm_groups=0),
            "no normalisation at all (flat colours are not re-centred), 4 channels, whole faces", batch_size=4),
    Variant("f4c3_nonorm_whole_adv", replace(F4, norm_groups=0), "f=4 without normalisation + patch discriminator (hinge)",
            batch_size=4, adv_weight=0.5, adv_start=300),
    Variant("f4c3_whole", F4, "f=4 (32x32x3 latents, the mask's own grid), whole faces", batch_size=4),
    Variant("f8c3_whole", BASE, "whole faces instead of crops (the norm statistics then match inference)",
            batch_size=4),
)


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: one real/fake logit per ~22x22 patch; it needs no pre-trained weights."""

    def __init__(self, ch: int = 32) -> None:
        super().__init__()
        layers, cin = [], 3
        for i, cout in enumerate((ch, ch * 2, ch * 4)):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1)]
            if i:
                layers += [nn.BatchNorm2d(cout)]
            layers += [nn.LeakyReLU(0.2)]
            cin = cout
        layers += [nn.Conv2d(cin, 1, 4, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """|grad rec| / |grad adv| at the decoder's last layer (the official LPIPSWithDiscriminator rule)."""
    gr = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
    ga = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
    return (gr.norm() / (ga.norm() + 1e-4)).clamp(0.0, 1e4).detach()


@dataclass
class Trainer:
    variant: Variant
    images: torch.Tensor  # uint8 [N, 3, H, W]
    directory: Path
    vae: AutoencoderKL = field(init=False)

    def __post_init__(self) -> None:
        torch.manual_seed(0)
        self.vae = AutoencoderKL(self.variant.vae)
        self.disc = PatchDiscriminator() if self.variant.adv_weight else None
        self.opt = torch.optim.AdamW(self.vae.parameters(), lr=self.variant.lr, weight_decay=0.0, betas=(0.5, 0.9))
        self.dopt = (torch.optim.AdamW(self.disc.parameters(), lr=self.variant.lr, weight_decay=0.0, betas=(0.5, 0.9))
                     if self.disc else None)
        self.g = torch.Generator().manual_seed(1)
        self.step = 0
        self.seconds = 0.0
        self.path = self.directory / "state.pt"
        if self.path.exists():
            s = torch.load(self.path, weights_only=True)
            self.vae.load_state_dict(s["vae"])
            self.opt.load_state_dict(s["opt"])
            if self.disc:
                self.disc.load_state_dict(s["disc"])
                self.dopt.load_state_dict(s["dopt"])
            self.g.set_state(s["g"])
            self.step, self.seconds = s["step"], s["seconds"]

    def save(self) -> None:
        s = {"vae": self.vae.state_dict(), "opt": self.opt.state_dict(), "g": self.g.get_state(),
             "step": self.step, "seconds": self.seconds}
        if self.disc:
            s |= {"disc": self.disc.state_dict(), "dopt": self.dopt.state_dict()}
        tmp = self.path.with_name("state.pt.tmp")
        torch.save(s, tmp)
        os.replace(tmp, self.path)

    def batch(self) -> torch.Tensor:
        v = self.variant
        idx = torch.randint(0, len(self.images), (v.batch_size,), generator=self.g)
        x = self.images[idx].float() / 127.5 - 1.0
        if v.crop and v.crop < x.shape[-1]:
            top, left = torch.randint(0, x.shape[-1] - v.crop + 1, (2,), generator=self.g).tolist()
            x = x[..., top:top + v.crop, left:left + v.crop]
        return x

    def one_step(self, warmup: int = 50) -> float:
        v = self.variant
        lr = v.lr * min(1.0, (self.step + 1) / warmup)
        for o in (self.opt, self.dopt):
            if o is not None:
                for group in o.param_groups:
                    group["lr"] = lr
        x = self.batch()
        post = self.vae.encode(x)
        rec = self.vae.decode(post.sample(self.g))
        rec_loss = (rec - x).abs().mean() + 1e-6 * post.kl().mean() / x[0].numel()
        if v.l2_weight:
            rec_loss = rec_loss + v.l2_weight * (rec - x).pow(2).mean()
        loss = rec_loss
        adv = self.disc is not None and self.step >= v.adv_start
        if adv:
            g_loss = -self.disc(rec).mean()
            w = adaptive_weight(rec_loss, g_loss, self.vae.decoder.conv_out.weight)
            loss = rec_loss + v.adv_weight * w * g_loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.vae.parameters(), 1.0)
        self.opt.step()
        if adv:
            d_loss = F.relu(1 - self.disc(x)).mean() + F.relu(1 + self.disc(rec.detach())).mean()
            self.dopt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.dopt.step()
        self.step += 1
        return float(rec_loss.detach())

    def train(self, steps: int, log) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "loss.jsonl").open("a") as f:
            running, t0 = 0.0, time.perf_counter()
            while self.step < steps:
                loss = self.one_step()
                if not np.isfinite(loss):
                    raise RuntimeError(f"{self.variant.name}: non-finite loss at step {self.step}")
                running += loss
                if self.step % 50 == 0 or self.step == steps:
                    self.seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    f.write(json.dumps({"step": self.step, "loss": running / 50, "seconds": round(self.seconds, 1)}) + "\n")
                    f.flush()
                    running = 0.0
                    self.save()
                    if self.step % 250 == 0:
                        log(f"{self.variant.name}: step {self.step}/{steps} ({self.seconds:.0f} s)")


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: np.ndarray, batch: int = 40) -> np.ndarray:
    """uint8 [N, H, W, 3] -> decode(encode(x).mean) as uint8."""
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        r = vae.decode(vae.encode(x).mean)
        out.append(((r.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def score(ev, images: np.ndarray, labels: np.ndarray, targets: dict, reference: np.ndarray | None = None) -> dict:
    """The evaluation's own mask and caption-attribute metrics, plus the pixel error against `reference`."""
    from collab.eval.metrics import attribute_metrics, mask_metrics

    out = mask_metrics(ev, images, labels) | attribute_metrics(ev, images, targets)
    if reference is not None:
        out["mae"] = float(np.abs(images.astype(np.float32) - reference.astype(np.float32)).mean())
    return out


def write_grid(path: Path, renders: np.ndarray, recs: np.ndarray, n: int = 8) -> None:
    from PIL import Image

    top = np.concatenate(list(renders[:n]), axis=1)
    bottom = np.concatenate(list(recs[:n]), axis=1)
    Image.fromarray(np.concatenate([top, bottom], axis=0)).resize((top.shape[1] * 2, top.shape[0] * 4),
                                                                   Image.NEAREST).save(path)


def save_vae_file(vae: AutoencoderKL, path: Path, step: int, seconds: float) -> None:
    """The VAE as float16 safetensors; its config, step and training seconds in the metadata, so a
    later session continues it (runs/ does not outlive a session)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"config": json.dumps(asdict(vae.config)), "step": str(step), "seconds": f"{seconds:.1f}"}
    save_file({k: v.half().contiguous() for k, v in vae.state_dict().items()}, path, metadata=meta)


def load_vae_file(vae: AutoencoderKL, path: Path) -> tuple[int, float]:
    """Load a --export file into `vae` (configs must agree); returns (step, seconds) it had trained."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    cfg = json.loads(meta["config"])
    if cfg != json.loads(json.dumps(asdict(vae.config))):
        raise ValueError(f"{path} holds a VAE of another config: {cfg}")
    vae.load_state_dict(tensors, strict=True)
    return int(meta["step"]), float(meta["seconds"])


def markdown(results: dict) -> str:
    """The study as a table, renders first, then each variant at each evaluated step."""
    head = ("| variant | latent | steps | parser mIoU | attr acc | gender | age | beard | MAE (0-255) | s/step | what |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for key, r in results.items():
        v = r.get("variant", {})
        rows.append(f"| {key.split('@')[0]} | {v.get('latent', '-')} | {r.get('steps', '-')} | {r['miou']:.3f} | "
                    f"{r['acc_mean']:.3f} | {r['acc_gender']:.3f} | {r['acc_age']:.3f} | {r['acc_beard']:.3f} | "
                    f"{r['mae']:.1f} | {r.get('seconds_per_step', '-')} | {v.get('note', 'the renders themselves')} |"
                    if "mae" in r else
                    f"| {key} | - | - | {r['miou']:.3f} | {r['acc_mean']:.3f} | {r['acc_gender']:.3f} | "
                    f"{r['acc_age']:.3f} | {r['acc_beard']:.3f} | 0 | - | the renders themselves |")
    return head + "\n".join(rows) + "\n"


def load_images(run: Path, num_images: int, log) -> torch.Tensor:
    """The demo's rendered training world (shared with `collab.train.demo` runs in the same folder)."""
    from collab.train.demo import DemoRecipe, load_world

    recipe = DemoRecipe() if num_images == DemoRecipe().num_images else \
        replace(DemoRecipe(), num_images=num_images, test_size=max(1, num_images // 16))
    world, _, _ = load_world(run, recipe, log)
    return world.images


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/vae_study"))
    ap.add_argument("--world", type=Path, default=None, help="run folder holding the rendered world (default: --run)")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--only", nargs="+", default=None, help="variant names")
    ap.add_argument("--n", type=int, default=200, help="held-out renders to evaluate")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--evaluator", default="checkpoints/evaluator")
    ap.add_argument("--num-images", type=int, default=8000)
    ap.add_argument("--export", type=Path, default=None,
                    help="write the (last) variant's VAE here as float16 safetensors with its config and step")
    ap.add_argument("--init", type=Path, default=None, help="a file written by --export to start a variant from")
    ap.add_argument("--shipped", default="demo", help="also score this model's VAE as shipped ('' to skip)")
    ap.add_argument("--model-row", action="append", default=[], metavar="LABEL=MODEL",
                    help="also score the VAE of this model (name or directory) as row LABEL (repeatable), "
                         "e.g. a trained model whose decoder was fine-tuned after the study")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()

    def log(s: str) -> None:
        print(f"[{time.time() - t0:6.0f}s] {s}", flush=True)

    from collab.eval import held_out_pairs
    from collab.evaluator import Evaluator

    images = load_images(args.world or args.run, args.num_images, log)
    ev = Evaluator.load(args.evaluator)
    data = held_out_pairs(args.n, 128)
    results_path = args.run / "study.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["renders"] = score(ev, data.images, data.labels, data.targets)
    if args.shipped and "shipped" not in results:  # the VAE in the shipped demo model, for reference
        from collab.registry import load_model

        recs = reconstruct(load_model(args.shipped).vae, data.images)
        results["shipped"] = {**score(ev, recs, data.labels, data.targets, data.images),
                              "variant": {"note": f"the VAE of {args.shipped} as shipped", "latent": "3x16^2"}}
        write_grid(args.run / "recon_shipped.png", data.images, recs)
    for item in args.model_row:
        label, sep, name = item.partition("=")
        if not sep:
            raise SystemExit(f"--model-row {item!r}: expected LABEL=MODEL")
        from collab.registry import load_model

        vae = load_model(name).vae
        recs = reconstruct(vae, data.images)
        results[label] = {**score(ev, recs, data.labels, data.targets, data.images),
                          "variant": {"note": f"the VAE of {name}",
                                      "latent": f"{vae.config.embed_dim}x{128 // vae.config.downsample_factor}^2"}}
        write_grid(args.run / f"recon_{label}.png", data.images, recs)
        log(f"{label}: mIoU {results[label]['miou']:.3f} acc {results[label]['acc_mean']:.3f} "
            f"MAE {results[label]['mae']:.1f}")
    if args.model_row:
        results_path.write_text(json.dumps(results, indent=1))
        (args.run / "study.md").write_text(markdown(results))
    variants = [v for v in VARIANTS if args.only is None or v.name in args.only]
    for v in variants:
        tr = Trainer(v, images, args.run / v.name)
        if args.init and tr.step == 0:  # continue a VAE kept from an earlier session (fresh optimiser)
            tr.step, tr.seconds = load_vae_file(tr.vae, args.init)
            log(f"{v.name}: starts from {args.init} (step {tr.step})")
        tr.train(args.steps, log)
        recs = reconstruct(tr.vae.eval(), data.images)
        tr.vae.train()
        row = {"steps": tr.step, "seconds": round(tr.seconds, 1), "seconds_per_step": round(tr.seconds / tr.step, 3),
               **score(ev, recs, data.labels, data.targets, data.images), "variant": v.describe()}
        results[f"{v.name}@{tr.step}"] = row
        write_grid(args.run / v.name / f"recon_{tr.step}.png", data.images, recs)
        torch.save(tr.vae.state_dict(), args.run / v.name / f"vae_{tr.step}.pt")
        if args.export:
            save_vae_file(tr.vae, args.export, tr.step, tr.seconds)
        results_path.write_text(json.dumps(results, indent=1))
        (args.run / "study.md").write_text(markdown(results))
        log(f"{v.name}@{tr.step}: mIoU {row['miou']:.3f} acc {row['acc_mean']:.3f} MAE {row['mae']:.1f} "
            f"({row['seconds_per_step']} s/step)")


if __name__ == "__main__":
    main()
