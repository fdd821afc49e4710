"""The stages of a Collaborative Diffusion training, each on the engine, each resumable.

VAE -> scale factor and latents -> one collaborator per modality (any condition kind, or the joint
baseline) -> dynamic diffusers by Algorithm 1 -> export. A data source (the demo's in-memory world,
or the official layout on disk) hands each stage a Dataset; a WarmStart (an exported model or
official checkpoints) can stand in for any network.
"""
from __future__ import annotations

from dataclasses import replace
from itertools import combinations
from pathlib import Path

import torch

from collab import kinds
from collab.config import ModelConfig
from collab.schedule import DiffusionSchedule
from collab.train.engine import Engine
from collab.train.loop import apply_weights, train
from collab.train.losses import diffuser_loss, ldm_loss, randn, vae_loss
from collab.train.recipe import Recipe
from collab.unet import UNetModel
from collab.vae import AutoencoderKL


def build_vae(cfg: ModelConfig) -> AutoencoderKL:
    """The VAE stage's network: the one place to choose another first stage."""
    return AutoencoderKL(cfg.vae)


class WarmStart:
    """Weights of an existing model to start a new run's stages from (`--init`): its VAE replaces the
    VAE stage, and every network of the same name and shape starts from its tensors (or is kept as it
    is with `--keep`), so more steps continue an earlier training instead of repeating it, and
    diffusers for a new modality train on top of existing (official) collaborators."""

    def __init__(self, tensors: dict[str, torch.Tensor], source: str, scale_factor: float | None = None,
                 directory: Path | None = None) -> None:
        self.tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        self.source, self.scale_factor, self.directory = source, scale_factor, directory

    @classmethod
    def load(cls, source: str | Path | list, config: str | None = None) -> WarmStart:
        """An exported model directory, or official .ckpt files (a list, or one file)."""
        from collab.model_folder import folder_layout, load_folder_config, read_model_tensors

        files = [Path(p) for p in source] if isinstance(source, (list, tuple)) else [Path(source)]
        if len(files) == 1 and files[0].is_dir() and folder_layout(files[0]) is not None:  # either layout
            cfg, _ = load_folder_config(files[0])
            return cls(read_model_tensors(files[0]), str(files[0]), cfg.scale_factor, files[0])
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"--init: no model directory or checkpoint file at {', '.join(missing)}")
        from collab.checkpoint import load_official

        model = load_official(files, config)
        return cls(model.state_dict(), ", ".join(map(str, files)), model.config.scale_factor)

    def part(self, prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    def load_into(self, module: torch.nn.Module, prefix: str) -> bool:
        """Load `prefix`'s tensors into `module` when they fit it exactly; False when absent. A tensor
        the module has and the source lacks is allowed only when it starts at zero (a path the new
        architecture adds that leaves the function as it was, e.g. the UNet's mean path)."""
        part = self.part(prefix)
        if not part:
            return False
        own = module.state_dict()
        added = sorted(set(own) - set(part))
        grown = [k for k in added if not own[k].is_floating_point() or own[k].count_nonzero()]
        if grown:
            raise ValueError(f"--init {self.source}: {prefix.rstrip('.')} lacks {', '.join(grown[:5])}, which "
                             f"this architecture does not start at zero; the model is of another architecture")
        module.load_state_dict({**part, **{k: own[k] for k in added}}, strict=True)
        return True


def condition_of(batch: dict, kind: str, encoder_config):
    """The encoder input of a modality from a training batch (its registered kind's `train_input`;
    a dict for a joint encoder). `kind` is the modality's kind, kept for callers."""
    return kinds.kind_of(encoder_config).train_input(batch, encoder_config)


def condition_keys(cfg: ModelConfig) -> set[str]:
    """The raw inputs a model's modalities read ("text": token ids or cached backbone states)."""
    return {kinds.kind_of(enc).reads for m in cfg.modalities for _, _, enc in m.inputs()}


def model_config(base: ModelConfig, vocab_size: int | None, scale_factor: float) -> ModelConfig:
    """The config to train: text encoders trained from scratch get the data vocabulary's size."""
    mods = tuple(replace(m, encoder=replace(m.encoder, vocab_size=vocab_size))
                 if kinds.kind_of(m.encoder).needs_vocab and vocab_size else m for m in base.modalities)
    return replace(base, modalities=mods, scale_factor=scale_factor, vocab="vocab.txt")


def export_vocab(cfg: ModelConfig, data_vocab: Path | None) -> Path | None:
    """The vocabulary a model's text modalities read: the data's, or a pre-trained backbone's own
    (a model has one tokenizer, so its text encoders cannot mix the two)."""
    needs = {kinds.kind_of(m.encoder).needs_vocab for m in cfg.modalities if m.kind == "text"}
    if needs == {False}:
        from collab.minilm import vocab_file

        return vocab_file()
    if len(needs) > 1:
        raise ValueError("one model cannot mix text encoders trained from scratch and pre-trained ones "
                         "(they read different vocabularies)")
    return data_vocab if needs else None


def vae_stage(engine: Engine, run: Path, recipe: Recipe, vae: AutoencoderKL, images, log) -> None:
    """L1 + KL on (crops of) images; writes <run>/vae.pt."""
    crop = recipe.vae_crop

    def loss_fn(batch, g):
        x = batch["image"]
        if crop and crop < x.shape[-1]:
            top, left = torch.randint(0, x.shape[-1] - crop + 1, (2,), generator=g).tolist()
            x = x[..., top:top + crop, left:left + crop]
        return vae_loss(vae, x, g, recipe.vae_kl_weight)[0]

    apply_weights({"vae": vae}, train(engine, run, "vae", {"vae": vae}, loss_fn, images, recipe.vae,
                                      workers=_workers(engine, recipe)))
    save_main(engine, vae.state_dict(), run / "vae.pt")


def decoder_stage(engine: Engine, run: Path, recipe: Recipe, vae: AutoencoderKL, data) -> None:
    """L1 on latent crops -> image crops, encoder frozen (stage "decoder", resumable). Only the
    decoder moves, so collaborators trained on the cached latents stay valid: it can run beside them."""
    path = run / "decoder.pt"
    if recipe.decoder.steps == 0:
        return
    if path.exists():
        vae.decoder.load_state_dict(torch.load(path, weights_only=True))
        return
    vae.decoder.train().requires_grad_(True)

    def loss_fn(batch, g):
        z = batch["latent_mean"] + batch["latent_std"] * randn(batch["latent_mean"].shape, g, batch["latent_mean"])
        x = batch["image"]
        f = x.shape[-1] // z.shape[-1]
        crop = (recipe.vae_crop or x.shape[-1]) // f
        top, left = torch.randint(0, z.shape[-1] - crop + 1, (2,), generator=g).tolist()
        z = z[..., top:top + crop, left:left + crop]
        x = x[..., top * f:(top + crop) * f, left * f:(left + crop) * f]
        return (vae.decode(z) - x).abs().mean()  # decode: includes the colour path when the VAE has one

    weights = train(engine, run, "decoder", {"decoder": vae.decoder}, loss_fn, data, recipe.decoder,
                    workers=_workers(engine, recipe))
    apply_weights({"decoder": vae.decoder}, weights)
    save_main(engine, vae.decoder.state_dict(), path)
    vae.decoder.eval().requires_grad_(False)


def latent_sampler(vae: AutoencoderKL, scale: float):
    """batch -> scaled z0: a draw from the cached posterior, or the frozen VAE's on the fly."""
    def z0(batch, g):
        if "latent_mean" in batch:
            mean = batch["latent_mean"]
            return (mean + batch["latent_std"] * randn(mean.shape, g, mean)) * scale
        with torch.no_grad():
            post = vae.encode(batch["image"])
            return (post.mean + post.std * randn(post.mean.shape, g, post.mean)) * scale
    return z0


def collaborator_stage(engine: Engine, run: Path, recipe: Recipe, m, data, z0, schedule: DiffusionSchedule,
                       unet: UNetModel, enc: torch.nn.Module, sample_fn=None) -> None:
    """One uni-modal LDM (or the joint baseline) with its condition encoder; writes <run>/ldm_<name>.pt."""
    def loss_fn(batch, g):
        return ldm_loss(unet, enc, condition_of(batch, m.kind, m.encoder), z0(batch, g), schedule, g,
                        recipe.p2_gamma)

    stage = f"ldm_{m.name}"
    weights = train(engine, run, stage, {"unet": unet, "encoder": enc}, loss_fn, data, recipe.ldm, sample_fn,
                    workers=_workers(engine, recipe))
    apply_weights({"unet": unet, "encoder": enc}, weights)
    save_main(engine, {"unet": unet.state_dict(), "encoder": enc.state_dict()}, run / f"{stage}.pt")


def diffuser_stage(engine: Engine, run: Path, recipe: Recipe, cfg: ModelConfig, data, z0, schedule,
                   collaborators: dict, encoders: dict, diffusers: dict) -> None:
    """Algorithm 1: collaborators and encoders frozen, the diffusers' per-pixel softmax mix of their
    eps against the noise. With more than two modalities each step trains a random subset of two or
    more, so any subset samples well. Writes <run>/diffusers.pt."""
    names = list(diffusers)
    subsets = [c for r in range(2, len(names) + 1) for c in combinations(names, r)]

    def loss_fn(batch, g):
        use = subsets[int(torch.randint(0, len(subsets), (1,), generator=g))]
        with torch.no_grad():
            ctx = {k: encoders[k](condition_of(batch, cfg.modality(k).kind, cfg.modality(k).encoder)) for k in use}
        return diffuser_loss(collaborators, diffusers, ctx, z0(batch, g), schedule, g, recipe.diffuser_p2_gamma)

    weights = train(engine, run, "diffusers", diffusers, loss_fn, data, recipe.diffusers,
                    workers=_workers(engine, recipe))
    apply_weights(diffusers, weights)
    save_main(engine, {k: d.state_dict() for k, d in diffusers.items()}, run / "diffusers.pt")


def save_main(engine: Engine, obj, path: Path) -> None:
    """torch.save on rank 0 (atomically), every rank waits for it."""
    if engine.is_main:
        tmp = path.with_name(path.name + ".tmp")
        torch.save(obj, tmp)
        tmp.replace(path)
    engine.barrier()


def _workers(engine: Engine, recipe: Recipe) -> int:
    return recipe.workers if engine.cfg.workers is None else engine.cfg.workers


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
        device = next(unet.parameters()).device
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            c = {k: v.to(device) for k, v in cond.items()} if isinstance(cond, dict) else cond.to(device)
            ctx = enc(c)
            size = unet.config.image_size
            x = torch.randn((count, vae.config.embed_dim, size, size), generator=g)
            noise = gaussian_noise(g)
            z = sample_ddim(lambda x, t: unet(x.to(device), t.to(device), ctx).cpu(), x,
                            SamplingSchedule.uniform(schedule, steps), 0.0, noise)
            images = to_uint8(vae.decode(z.to(device) / scale).cpu())
        unet.train(was[0]), enc.train(was[1])
        (run / "samples").mkdir(exist_ok=True)
        Image.fromarray(grid(list(images), ncols=len(images))).save(run / "samples" / f"{stage}_{step:06d}.png")

    return sample
