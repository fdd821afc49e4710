"""Train the embedded demo model set on the face world, with one resumable command.

    python -m collab.train.demo --run runs/demo --out checkpoints/demo
    python -m collab.train.demo --run runs/demo --out checkpoints/joint --config joint --p2-gamma 1

Stages, each skipped when its result exists, each resumable mid-way: render the world (official
layout) -> VAE -> scale factor and latent cache -> one collaborator per modality of the config
(demo: mask, text, attributes) -> dynamic diffusers (Algorithm 1) -> export (a model folder,
`collab.model_folder`, + vocab.txt). Re-running the same command after an interruption continues where
it stopped. A config without diffusers (`joint`: one LDM on attributes + mask at once) shares the
run's VAE and latents and trains only its own LDM.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from itertools import combinations
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from collab.checkpoint import save_pretrained
from collab.config import ModelConfig, load_config
from collab.encoders import PretrainedTextEncoder, PretrainedTextEncoderConfig, TextEncoderConfig, build_encoder
from collab.model import CollaborativeModel
from collab.schedule import DiffusionSchedule
from collab.tokenizer import WordPieceTokenizer
from collab.train.loop import LoopConfig, apply_weights, train
from collab.train.losses import diffuser_loss, estimate_scale_factor, ldm_loss, vae_loss
from collab.unet import UNetModel
from collab.vae import AutoencoderKL

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


@dataclass(frozen=True)
class DemoRecipe:
    num_images: int = 8000
    test_size: int = 500
    size: int = 128
    seed: int = 0
    # Sized for about 60 minutes on 2 CPU cores when nothing else runs (measured: VAE 0.37 s/step on
    # 8 crops of 64x64, collaborators 0.26 s/step and diffusers 0.5 s/step at batch 32 on 16x16x3).
    vae: LoopConfig = LoopConfig(steps=2000, lr=4e-4, batch_size=8, warmup=50)
    vae_crop: int = 64  # the VAE is convolutional: train on crops, 4x cheaper than whole faces
    # optionally the decoder alone on cached latents (does not move the latent space the collaborators
    # learn, so it can run beside them); off by default: it gained little over a converged VAE
    decoder: LoopConfig = LoopConfig(steps=0, lr=3e-4, batch_size=8, warmup=50)
    ldm: LoopConfig = LoopConfig(steps=1500, lr=5e-4, batch_size=32, ema_decay=0.999, warmup=100, sample_every=1000)
    diffusers: LoopConfig = LoopConfig(steps=800, lr=5e-4, batch_size=32, warmup=50)
    p2_gamma: float = 0.0  # P2 weighting of the collaborators' loss
    diffuser_p2_gamma: float = 0.0  # and of Algorithm 1's loss (the diffusers)

    def scaled(self, factor: float) -> DemoRecipe:
        """Every stage's step count times `factor` (for smoke runs and tests)."""
        def s(c: LoopConfig) -> LoopConfig:
            return replace(c, steps=max(2, int(c.steps * factor)), warmup=max(1, int(c.warmup * factor)),
                           save_every=max(1, int(c.save_every * factor)), log_every=max(1, int(c.log_every * factor)),
                           sample_every=int(c.sample_every * factor) and max(1, int(c.sample_every * factor)))
        return replace(self, vae=s(self.vae), decoder=s(self.decoder), ldm=s(self.ldm), diffusers=s(self.diffusers))


# ---------------------------------------------------------------- data


def build_vocab(captions: list[str]) -> list[str]:
    """A WordPiece vocabulary of the training captions' words, plus every character as a
    fallback piece, so unseen words split into known pieces instead of [UNK]."""
    from collab.tokenizer import basic_tokenize

    words = sorted({w for c in captions for w in basic_tokenize(c.lower())})
    chars = sorted({ch for w in words for ch in w} | set("abcdefghijklmnopqrstuvwxyz0123456789.,'-!?"))
    return SPECIALS + words + [c for c in chars if c not in words] + [f"##{c}" for c in chars]


@dataclass
class WorldTensors:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    labels32: torch.Tensor  # uint8 [N, 1024] mask labels on the 32x32 grid
    tokens: torch.Tensor  # int64 [N, 77], the world's own vocabulary (text encoders trained from scratch)
    names: list[str]
    attributes: torch.Tensor | None = None  # float 0/1 [N, K]
    attribute_names: tuple[str, ...] = ()
    captions: list[str] = field(default_factory=list)
    cache_dir: Path | None = None  # where frozen text-encoder states are cached
    _states: dict = field(default_factory=dict)

    def batch_images(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx].float() / 127.5 - 1.0

    def batch_masks(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.labels32[idx].long(), 19).transpose(1, 2).float()

    def batch_conditions(self, kind: str, encoder_config, idx: torch.Tensor):
        """The encoder input of a modality of `kind` for images `idx` (a dict for a joint encoder)."""
        if kind == "text":
            if isinstance(encoder_config, PretrainedTextEncoderConfig):
                return self.frozen_text_states(encoder_config)[idx].float()
            return self.tokens[idx]
        if kind in ("mask", "mask_grid"):
            return self.batch_masks(idx)
        if kind == "attributes":
            if self.attributes is None or tuple(encoder_config.names) != self.attribute_names:
                raise ValueError(f"the attribute encoder expects {encoder_config.names}, the data has "
                                 f"{self.attribute_names or 'no attribute table'}")
            return self.attributes[idx]
        if kind == "joint":
            return {p.name: self.batch_conditions(p.kind, p.encoder, idx) for p in encoder_config.parts}
        raise ValueError(f"no training data for condition kind {kind!r}")

    def frozen_text_states(self, cfg: PretrainedTextEncoderConfig) -> torch.Tensor:
        """Every caption through a frozen pre-trained text backbone, once (float16 [N, L, width], cached
        in memory and in `cache_dir`): its encoder's trained part then takes these states directly."""
        key = (cfg.backbone, cfg.max_seq_len)
        if key not in self._states:
            path = self.cache_dir / f"text_states_{cfg.backbone}_{cfg.max_seq_len}.pt" if self.cache_dir else None
            if path is not None and path.exists():
                states = torch.load(path, weights_only=True)
            else:
                if not self.captions:
                    raise ValueError("no captions in the world cache to encode")
                from collab.minilm import text_input

                enc = PretrainedTextEncoder(cfg)
                tok = text_input(cfg.max_seq_len)
                states = torch.cat([enc.states(tok.prepare(self.captions[i:i + 256])).to(torch.float16)
                                    for i in range(0, len(self.captions), 256)])
                if path is not None:
                    torch.save(states, path)
            self._states[key] = states
        return self._states[key]


def load_world(run: Path, recipe: DemoRecipe, log) -> tuple[WorldTensors, WordPieceTokenizer, Path]:
    from collab.data.layout import OfficialLayoutDataset, write_official_layout

    data = run / "data"
    cache = run / "world_tensors.pt"
    vocab_path = run / "vocab.txt"
    if not cache.exists():
        if not (data / "captions.json").exists():
            log(f"rendering {recipe.num_images} faces into {data}")
            write_official_layout(data, recipe.num_images, seed=recipe.seed, size=recipe.size)
        ds = OfficialLayoutDataset.from_root(data, phase="train", test_size=recipe.test_size)
        items = [ds[i] for i in range(len(ds))]
        captions = [it["caption"] for it in items]
        vocab_path.write_text("\n".join(build_vocab(captions)) + "\n")
        tok = WordPieceTokenizer.from_vocab_file(vocab_path, verify=False)
        images = torch.stack([((it["image"] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for it in items])
        labels = torch.stack([it["mask"].argmax(0).to(torch.uint8) for it in items])
        torch.save({"images": images, "labels32": labels, "tokens": tok.encode(captions).ids, "captions": captions,
                    "names": [it["name"] for it in items], "attributes": torch.stack([it["attributes"] for it in items]),
                    "attribute_names": list(ds.attribute_names)}, cache)
    t = torch.load(cache, weights_only=True)
    if "attributes" not in t:  # caches made before the attribute modality: add it once
        names, table = _attribute_table(data)
        t["attributes"] = torch.from_numpy(np.stack([table[n] for n in t["names"]]))
        t["attribute_names"] = list(names)
        torch.save(t, cache)
    if "captions" not in t:  # caches made before pre-trained text encoders: add the raw captions once
        table = json.loads((data / "captions.json").read_text())
        t["captions"] = [table[name]["Beard_and_Age"] for name in t["names"]]
        torch.save(t, cache)
    tok = WordPieceTokenizer.from_vocab_file(vocab_path, verify=False)
    return (WorldTensors(t["images"], t["labels32"], t["tokens"], t["names"], t["attributes"],
                         tuple(t["attribute_names"]), t["captions"], run), tok, vocab_path)


def _attribute_table(data: Path):
    """The layout's CelebA-format attribute table, written from attributes.json by layouts that predate it."""
    from collab.data.faceworld import BINARY_ATTRIBUTES
    from collab.data.layout import LayoutPaths, _binary, read_attribute_table, write_attribute_table

    paths = LayoutPaths(data)
    if not paths.attribute_table.exists():
        records = json.loads(paths.attributes.read_text())
        write_attribute_table(paths.attribute_table, BINARY_ATTRIBUTES, {k: _binary(v) for k, v in records.items()})
    return read_attribute_table(paths.attribute_table)


# ---------------------------------------------------------------- stages


def model_config(base: ModelConfig, vocab_size: int, scale_factor: float) -> ModelConfig:
    """The config to train: text encoders trained from scratch get the world vocabulary's size."""
    mods = tuple(replace(m, encoder=replace(m.encoder, vocab_size=vocab_size))
                 if isinstance(m.encoder, TextEncoderConfig) else m for m in base.modalities)
    return replace(base, modalities=mods, scale_factor=scale_factor, vocab="vocab.txt")


def export_vocab(cfg: ModelConfig, world_vocab: Path) -> Path:
    """The vocabulary a model's text modalities read: the world's, or a pre-trained backbone's own
    (a model has one tokenizer, so its text encoders cannot mix the two)."""
    kinds = {type(m.encoder) for m in cfg.modalities if m.kind == "text"}
    if kinds == {PretrainedTextEncoderConfig}:
        from collab.minilm import vocab_file

        return vocab_file()
    if len(kinds) > 1:
        raise ValueError("one model cannot mix text encoders trained from scratch and pre-trained ones "
                         "(they read different vocabularies)")
    return world_vocab


def draw_latents(lat: dict, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A sample of the cached VAE posteriors of images `idx` (unscaled): mean + std * noise."""
    mean = lat["mean"][idx]
    return mean + lat["std"][idx] * torch.randn(mean.shape, generator=g)


def ldm_sampler(vae: AutoencoderKL, unet: UNetModel, enc: torch.nn.Module, cond, count: int, scale: float,
                schedule: DiffusionSchedule, stage: str, steps: int = 20):
    """A `sample_fn` for the loop: a grid of DDIM samples of fixed conditions, written as
    <run>/samples/<stage>_<step>.png, so a run can be looked at while it trains."""
    from PIL import Image

    from collab.pipeline import to_uint8
    from collab.samplers import gaussian_noise, sample_ddim
    from collab.schedule import SamplingSchedule
    from collab.visualize import grid

    def sample(step: int, run: Path) -> None:
        was = unet.training, enc.training
        unet.eval(), enc.eval()
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            ctx = enc(cond)
            size = unet.config.image_size
            x = torch.randn((count, vae.config.embed_dim, size, size), generator=g)
            z = sample_ddim(lambda x, t: unet(x, t, ctx), x, SamplingSchedule.uniform(schedule, steps), 0.0,
                            gaussian_noise(g))
            images = to_uint8(vae.decode(z / scale))
        unet.train(was[0]), enc.train(was[1])
        (run / "samples").mkdir(exist_ok=True)
        Image.fromarray(grid(list(images), ncols=len(images))).save(run / "samples" / f"{stage}_{step:06d}.png")

    return sample


def finetune_decoder(run: Path, vae: AutoencoderKL, world: WorldTensors, lat: dict, recipe: DemoRecipe) -> None:
    """L1 on latent crops -> image crops, encoder frozen (stage "decoder", resumable)."""
    path = run / "decoder.pt"
    if recipe.decoder.steps == 0:
        return
    if path.exists():
        vae.decoder.load_state_dict(torch.load(path, weights_only=True))
        return
    f = world.images.shape[-1] // lat["mean"].shape[-1]
    crop = recipe.vae_crop // f
    vae.decoder.train().requires_grad_(True)

    def step(g, _):
        idx = torch.randint(0, len(world.names), (recipe.decoder.batch_size,), generator=g)
        z = draw_latents(lat, idx, g)
        top, left = torch.randint(0, z.shape[-1] - crop + 1, (2,), generator=g).tolist()
        z = z[..., top:top + crop, left:left + crop]
        x = world.batch_images(idx)[..., top * f:(top + crop) * f, left * f:(left + crop) * f]
        return (vae.decoder(vae.post_quant_conv(z)) - x).abs().mean()

    weights = train(run, "decoder", {"decoder": vae.decoder}, step, recipe.decoder)
    apply_weights({"decoder": vae.decoder}, weights)
    torch.save(vae.decoder.state_dict(), path)
    vae.decoder.eval().requires_grad_(False)


class WarmStart:
    """Weights of an exported model (`--init DIR`) to start a new run's stages from: its VAE
    replaces the VAE stage, and every network of the same name and shape starts from its tensors,
    so more steps continue an earlier training instead of repeating it."""

    def __init__(self, directory: Path) -> None:
        from collab.model_folder import read_model_tensors

        self.directory = directory
        self.tensors = {k: v.float() if v.is_floating_point() else v
                        for k, v in read_model_tensors(directory).items()}

    def part(self, prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    def load(self, module: torch.nn.Module, prefix: str) -> bool:
        """Load `prefix`'s tensors into `module` when they fit it exactly; False when absent."""
        part = self.part(prefix)
        if not part:
            return False
        module.load_state_dict(part, strict=True)
        return True


def run_demo(run: Path, out: Path, recipe: DemoRecipe, base_config: str = "demo", log=print,
             until: str | None = None, init: Path | None = None, keep: tuple[str, ...] = ()) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    if keep and init is None:
        raise ValueError("keeping a collaborator as it is needs --init (the model to keep it from)")
    warm = WarmStart(init) if init else None
    world, tok, vocab_path = load_world(run, recipe, log)
    n = len(world.names)
    base = load_config(base_config)
    schedule = DiffusionSchedule.linear(base.timesteps, base.linear_start, base.linear_end)
    torch.manual_seed(recipe.seed)

    # 1. VAE
    vae = AutoencoderKL(base.vae)
    vae_file = run / "vae.pt"
    if vae_file.exists():
        vae.load_state_dict(torch.load(vae_file, weights_only=True))
    elif warm is not None and warm.load(vae, "vae."):
        log(f"VAE taken from {warm.directory}")
        torch.save(vae.state_dict(), vae_file)
    else:
        def vae_step(g, step):
            idx = torch.randint(0, n, (recipe.vae.batch_size,), generator=g)
            x = world.batch_images(idx)
            if recipe.vae_crop and recipe.vae_crop < x.shape[-1]:
                top, left = torch.randint(0, x.shape[-1] - recipe.vae_crop + 1, (2,), generator=g).tolist()
                x = x[..., top:top + recipe.vae_crop, left:left + recipe.vae_crop]
            return vae_loss(vae, x, g)[0]
        apply_weights({"vae": vae}, train(run, "vae", {"vae": vae}, vae_step, recipe.vae))
        torch.save(vae.state_dict(), vae_file)
    vae.eval().requires_grad_(False)

    # 2. scale factor and the latent cache (posterior mean and std of every image)
    lat_file = run / "latents.pt"
    if not lat_file.exists():
        with torch.no_grad():
            posts = [vae.encode(world.batch_images(torch.arange(i, min(i + 64, n)))) for i in range(0, n, 64)]
        mean = torch.cat([p.mean for p in posts])
        std = torch.cat([p.std for p in posts])
        scale = float(1.0 / mean.std())
        torch.save({"mean": mean, "std": std, "scale": scale}, lat_file)
    lat = torch.load(lat_file, weights_only=True)
    scale = lat["scale"]
    log(f"scale factor {scale:.4f}")
    finetune_decoder(run, vae, world, lat, recipe)
    vae.eval().requires_grad_(False)
    if until == "decoder":
        return run
    cfg = model_config(base, tok.vocab_size, scale)
    model_vocab = export_vocab(cfg, vocab_path)  # checked before any training

    def latents(idx, g):
        return draw_latents(lat, idx, g) * scale

    def conditions(name, idx):
        m = cfg.modality(name)
        return world.batch_conditions(m.kind, m.encoder, idx)

    def from_init(unet, enc, name) -> bool:
        """Load collaborator `name` and its encoder from --init; False when it has none."""
        return warm is not None and warm.load(unet, f"collaborators.{name}.") and warm.load(enc, f"encoders.{name}.")

    # 3. one collaborator per modality, its encoder trained with it
    collaborators, encoders = {}, {}
    for m in cfg.modalities:
        unet, enc = UNetModel(m.collaborator), build_encoder(m.kind, m.encoder)
        path = run / f"ldm_{m.name}.pt"
        if path.exists():
            w = torch.load(path, weights_only=True)
            try:
                unet.load_state_dict(w["unet"])
                enc.load_state_dict(w["encoder"])
            except RuntimeError as e:
                raise ValueError(f"{path} holds a collaborator of another architecture or encoder than the "
                                 f"config's {m.name!r} (move it aside to train a new one): {str(e)[:300]}") from e
        elif m.name in keep:
            if not from_init(unet, enc, m.name):
                raise ValueError(f"--keep {m.name}: the --init model has no collaborator {m.name!r} to keep")
            log(f"collaborator {m.name} kept as in {warm.directory} (no more steps)")
            torch.save({"unet": unet.state_dict(), "encoder": enc.state_dict()}, path)
        else:
            if from_init(unet, enc, m.name):
                log(f"collaborator {m.name} starts from {warm.directory}")

            def ldm_step(g, step, unet=unet, enc=enc, name=m.name):
                idx = torch.randint(0, n, (recipe.ldm.batch_size,), generator=g)
                return ldm_loss(unet, enc, conditions(name, idx), latents(idx, g), schedule, g, recipe.p2_gamma)
            held = torch.arange(n - 4, n)  # fixed conditions for the periodic grids
            sampler = ldm_sampler(vae, unet, enc, conditions(m.name, held), len(held), scale, schedule, f"ldm_{m.name}")
            weights = train(run, f"ldm_{m.name}", {"unet": unet, "encoder": enc}, ldm_step, recipe.ldm, sampler)
            apply_weights({"unet": unet, "encoder": enc}, weights)
            torch.save({"unet": unet.state_dict(), "encoder": enc.state_dict()}, path)
        collaborators[m.name] = unet.eval().requires_grad_(False)
        encoders[m.name] = enc.eval().requires_grad_(False)
    if until == "collaborators":
        return run

    # 4. dynamic diffusers (Algorithm 1): collaborators and encoders frozen. With more than two
    # modalities each step trains a random subset of two or more, so any subset samples well.
    diffusers = {m.name: UNetModel(m.diffuser) for m in cfg.modalities if m.diffuser}
    diff_file = run / "diffusers.pt"
    _archive_if_other_modalities(run, diff_file, set(diffusers), log)
    if diff_file.exists():
        w = torch.load(diff_file, weights_only=True)
        for k, d in diffusers.items():
            d.load_state_dict(w[k])
    elif diffusers:
        if warm is not None and all([warm.load(d, f"diffusers.{k}.") for k, d in diffusers.items()]):
            log(f"dynamic diffusers start from {warm.directory}")
        names = list(diffusers)
        subsets = [c for r in range(2, len(names) + 1) for c in combinations(names, r)]

        def diff_step(g, step):
            idx = torch.randint(0, n, (recipe.diffusers.batch_size,), generator=g)
            use = subsets[int(torch.randint(0, len(subsets), (1,), generator=g))]
            with torch.no_grad():
                ctx = {k: encoders[k](conditions(k, idx)) for k in use}
            return diffuser_loss(collaborators, diffusers, ctx, latents(idx, g), schedule, g, recipe.diffuser_p2_gamma)
        apply_weights(diffusers, train(run, "diffusers", diffusers, diff_step, recipe.diffusers))
        torch.save({k: d.state_dict() for k, d in diffusers.items()}, diff_file)

    # 5. export in the project's format
    model = CollaborativeModel(cfg)
    model.vae.load_state_dict(vae.state_dict())
    for k in collaborators:
        model.collaborators[k].load_state_dict(collaborators[k].state_dict())
        model.encoders[k].load_state_dict(encoders[k].state_dict())
        if k in diffusers:
            model.diffusers[k].load_state_dict(diffusers[k].state_dict())
    save_pretrained(model, out, storage_dtype=torch.float16)  # half the file; loads as float32
    (out / "vocab.txt").write_text(model_vocab.read_text())
    record = {"recipe": _plain(recipe), "images": n, "scale_factor": scale, "stage_seconds": stage_seconds(run, cfg),
              "stage_steps": stage_steps(run, cfg)}
    if warm is not None and (warm.directory / "training.json").exists():
        # a continued training: its cost includes the run it started from
        before = json.loads((warm.directory / "training.json").read_text())
        record["continued_from"] = before
        now, then = record["stage_seconds"], before.get("stage_seconds", {})
        record["stage_seconds"] = {k: round(now.get(k, 0.0) + then.get(k, 0.0), 1) for k in then | now}
    (out / "training.json").write_text(json.dumps(record, indent=1))
    log(f"exported to {out}")
    return out


def _archive_if_other_modalities(run: Path, diff_file: Path, names: set[str], log) -> None:
    """Diffusers trained for another modality set are moved aside (kept, never overwritten)."""
    if not diff_file.exists():
        return
    old = set(torch.load(diff_file, weights_only=True))
    if old == names:
        return
    tag = "_".join(sorted(old))
    for suffix in (".pt", ".state.pt", ".loss.jsonl"):
        f = run / f"diffusers{suffix}"
        if f.exists():
            f.rename(run / f"diffusers.{tag}{suffix}")
    log(f"diffusers were trained for {sorted(old)}; kept as diffusers.{tag}.pt, retraining for {sorted(names)}")


def stage_seconds(run: Path, cfg: ModelConfig) -> dict[str, float]:
    """Training wall seconds of each stage this model used (VAE, collaborators, diffusers)."""
    from collab.train.report import stage_logs, wall_seconds

    logs = stage_logs(run)
    return {s: round(wall_seconds(logs[s]), 1) for s in _stages(cfg) if s in logs}


def stage_steps(run: Path, cfg: ModelConfig) -> dict[str, int]:
    """Steps each stage trained in this run (the last logged step; stages taken over are absent)."""
    from collab.train.report import stage_logs

    logs = stage_logs(run)
    return {s: int(logs[s][-1]["step"]) for s in _stages(cfg) if s in logs}


def _stages(cfg: ModelConfig) -> list[str]:
    return ["vae", "decoder", *(f"ldm_{m.name}" for m in cfg.modalities), "diffusers"]


def _plain(obj):
    from dataclasses import asdict

    return asdict(obj)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/demo"), help="working directory (resumable)")
    ap.add_argument("--out", type=Path, default=Path("checkpoints/demo"))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every stage's step count (smoke runs)")
    ap.add_argument("--num-images", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--until", choices=("decoder", "collaborators"),
                    help="stop after this stage (e.g. to run it beside a running job, or to train diffusers later)")
    ap.add_argument("--init", type=Path, default=None,
                    help="an exported model directory to start from (its VAE, collaborators and diffusers): "
                         "a new --run with --ldm-steps N continues an earlier training")
    ap.add_argument("--config", default="demo", help="model config to train (shipped name or YAML path), e.g. joint")
    ap.add_argument("--ldm-steps", type=int, default=None, help="collaborator steps (default: the recipe's)")
    ap.add_argument("--keep", nargs="+", default=(), metavar="MODALITY",
                    help="with --init: take these collaborators as they are instead of training them further")
    ap.add_argument("--diffuser-steps", type=int, default=None, help="dynamic diffuser steps (default: the recipe's)")
    ap.add_argument("--p2-gamma", type=float, default=None,
                    help="P2 loss weighting exponent of the collaborators (0 = plain loss)")
    ap.add_argument("--diffuser-p2-gamma", type=float, default=None,
                    help="P2 loss weighting exponent of the dynamic diffusers (0 = Algorithm 1's plain loss)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = DemoRecipe().scaled(args.scale) if args.scale != 1.0 else DemoRecipe()
    if args.num_images:
        recipe = replace(recipe, num_images=args.num_images, test_size=max(1, args.num_images // 16))
    if args.ldm_steps:
        recipe = replace(recipe, ldm=replace(recipe.ldm, steps=args.ldm_steps))
    if args.diffuser_steps:
        recipe = replace(recipe, diffusers=replace(recipe.diffusers, steps=args.diffuser_steps))
    if args.p2_gamma is not None:
        recipe = replace(recipe, p2_gamma=args.p2_gamma)
    if args.diffuser_p2_gamma is not None:
        recipe = replace(recipe, diffuser_p2_gamma=args.diffuser_p2_gamma)
    t0 = time.time()
    run_demo(args.run, args.out, recipe, base_config=args.config,
             log=lambda s: print(f"[{time.time() - t0:7.0f}s] {s}", flush=True), until=args.until, init=args.init,
             keep=tuple(args.keep))
    print(f"total wall time {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
