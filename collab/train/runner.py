"""A whole training run from a recipe: every stage in order, each skipped when its result exists,
each resumable mid-way, on the data of a source (the demo's world, or an official layout on disk)."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from collab.checkpoint import save_pretrained
from collab.config import ModelConfig
from collab import kinds
from collab.encoders import build_encoder
from collab.model import CollaborativeModel
from collab.schedule import DiffusionSchedule
from collab.train.data import LatentCache, LayoutDataset, collate
from collab.train.engine import Engine
from collab.train.recipe import Recipe
from collab.train.stages import (WarmStart, build_vae, collaborator_stage, condition_keys, condition_of,
                                 decoder_stage, diffuser_stage, export_vocab, latent_sampler, ldm_sampler,
                                 model_config, save_main, vae_stage)
from collab.unet import UNetModel


class LayoutSource:
    """Real data: the official layout under `root`, read file by file by DataLoader workers, with
    the VAE's posteriors optionally cached once in a memory-mapped file."""

    def __init__(self, root: Path, recipe: Recipe, vocab: str | Path | None = None) -> None:
        from collab.data.layout import LayoutPaths

        if not LayoutPaths(Path(root)).captions.exists():
            raise FileNotFoundError(f"--data {root}: no captions.json there; give the root of an official layout "
                                    "(images/, masks/, captions.json: see collab/data/layout.py)")
        self.root, self.recipe, self.vocab = Path(root), recipe, vocab
        self.vocab_path: Path | None = None
        self.vocab_size: int | None = None

    def images(self):
        return LayoutDataset(self.root, "train", self.recipe.test_size, self.recipe.size)

    def latents(self, engine: Engine, run: Path, vae, scale_hint: float | None, log):
        lat = None
        if self.recipe.cache_latents:
            f = vae.config.downsample_factor
            shape = (vae.config.embed_dim, self.recipe.size // f, self.recipe.size // f)
            path = run / f"latents_{self.recipe.size}.npy"
            if not LatentCache.done(path):
                log(f"caching the VAE posteriors of {len(self.images())} images in {path}")
            lat = LatentCache.build(path, self.images(), vae.encode, shape, engine,
                                    workers=self.recipe.workers if engine.cfg.workers is None else engine.cfg.workers)
        if scale_hint is not None:
            return lat, scale_hint
        if lat is not None:
            means = torch.from_numpy(lat.array[:2000, 0].astype("float32"))
        else:
            with torch.no_grad():
                batch = collate([self.images()[i] for i in range(min(256, len(self.images())))])
                means = vae.encode(batch["image"].to(engine.device)).mean.cpu()
        return lat, float(1.0 / means.std())

    def tokenizer(self, cfg: ModelConfig):
        """The text modality's input adapter, run in the data workers (a WordPiece vocabulary is read
        only when its encoder kind needs one)."""
        text = [m.encoder for m in cfg.modalities if m.kind == "text"]
        if not text:
            return None
        kind, tok = kinds.kind_of(text[0]), None
        if kind.needs_vocab:
            from collab.tokenizer import WordPieceTokenizer, find_vocab

            self.vocab_path = find_vocab(self.vocab)
            tok = WordPieceTokenizer.from_vocab_file(self.vocab_path)
            self.vocab_size = tok.vocab_size
        return kind.adapter(text[0], tok)

    def dataset(self, cfg: ModelConfig, lat, images: bool = False):
        keys = condition_keys(cfg)
        ds = LayoutDataset(self.root, "train", self.recipe.test_size, self.recipe.size,
                           tokenizer=self.tokenizer(cfg) if "text" in keys else None, latents=lat,
                           with_images=images or lat is None)
        check_attributes(cfg, ds.attribute_names)
        return ds


def check_attributes(cfg: ModelConfig, names: tuple[str, ...]) -> None:
    for m in cfg.modalities:
        for _, kind, enc in m.inputs():
            if kind == "attributes" and tuple(enc.names) != tuple(names):
                raise ValueError(f"the attribute encoder of {m.name!r} expects {enc.names}, the data has "
                                 f"{names or 'no attribute table'}")


def run_recipe(engine: Engine, run: Path, out: Path, recipe: Recipe, source, base: ModelConfig, log=print,
               until: str | None = None, init: WarmStart | None = None, keep: tuple[str, ...] = (),
               only: tuple[str, ...] = ()) -> Path:
    """Train every stage of `base` on `source`'s data and export the model to `out`. `only`: train just
    these collaborators and stop (several processes then share one run, one collaborator each)."""
    run.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(only) - {m.name for m in base.modalities})
    if unknown:
        raise ValueError(f"--only {', '.join(unknown)}: the config's modalities are "
                         f"{', '.join(m.name for m in base.modalities)}")
    if keep and init is None:
        raise ValueError("keeping a collaborator as it is needs --init (the model to keep it from)")
    schedule = DiffusionSchedule.linear(base.timesteps, base.linear_start, base.linear_end)
    torch.manual_seed(recipe.seed)  # initial weights: the same on every rank (DDP checks nothing)

    # 1. VAE
    vae, from_init = build_vae(base), False
    vae_file = run / "vae.pt"
    if vae_file.exists():
        vae.load_state_dict(torch.load(vae_file, weights_only=True))
    elif init is not None and init.load_into(vae, "vae."):
        log(f"VAE taken from {init.source}")
        save_main(engine, vae.state_dict(), vae_file)
        from_init = True
    else:
        vae_stage(engine, run, recipe, vae, source.images(), log)
    vae = vae.to(engine.device).eval().requires_grad_(False)

    # 2. scale factor and latents (cached once when the source does), optional decoder fine-tuning
    lat, scale = source.latents(engine, run, vae, init.scale_factor if from_init and init.scale_factor else None, log)
    log(f"scale factor {scale:.4f}")
    if recipe.decoder.steps and not only:
        decoder_stage(engine, run, recipe, vae, source.dataset(base, lat, images=True))
        vae.eval().requires_grad_(False)
    if until == "decoder":
        return run
    data = source.dataset(base, lat)
    cfg = model_config(base, source.vocab_size, scale)
    model_vocab = export_vocab(cfg, source.vocab_path)  # checked before any training
    z0 = latent_sampler(vae, scale)
    held = collate([data[i] for i in range(len(data) - 4, len(data))])  # fixed conditions of the sample grids

    # 3. one collaborator per modality, its encoder trained with it
    collaborators, encoders = {}, {}
    for m in cfg.modalities:
        if only and m.name not in only:
            continue
        unet, enc = UNetModel(m.collaborator), build_encoder(m.kind, m.encoder)
        path = run / f"ldm_{m.name}.pt"
        in_init = init is not None and init.load_into(unet, f"collaborators.{m.name}.") \
            and init.load_into(enc, f"encoders.{m.name}.")
        if path.exists():
            _load_collaborator(path, unet, enc, m.name)
        elif m.name in keep:
            if not in_init:
                raise ValueError(f"--keep {m.name}: the --init model has no collaborator {m.name!r} to keep")
            log(f"collaborator {m.name} kept as in {init.source} (no more steps)")
            save_main(engine, {"unet": unet.state_dict(), "encoder": enc.state_dict()}, path)
        else:
            if in_init:
                log(f"collaborator {m.name} starts from {init.source}")
            sampler = ldm_sampler(vae, unet, enc, condition_of(held, m.kind, m.encoder), 4, scale, schedule,
                                  f"ldm_{m.name}")
            collaborator_stage(engine, run, recipe, m, data, z0, schedule, unet, enc, sampler)
        collaborators[m.name] = unet.to(engine.device).eval().requires_grad_(False)
        encoders[m.name] = enc.to(engine.device).eval().requires_grad_(False)
    if until == "collaborators" or only:
        return run

    # 4. dynamic diffusers (Algorithm 1) on the frozen collaborators
    diffusers = {m.name: UNetModel(m.diffuser) for m in cfg.modalities if m.diffuser}
    diff_file = run / "diffusers.pt"
    archive_if_other_modalities(engine, run, diff_file, set(diffusers), log)
    if diff_file.exists():
        w = torch.load(diff_file, weights_only=True)
        for k, d in diffusers.items():
            d.load_state_dict(w[k])
    elif diffusers:
        if init is not None and all([init.load_into(d, f"diffusers.{k}.") for k, d in diffusers.items()]):
            log(f"dynamic diffusers start from {init.source}")
        diffuser_stage(engine, run, recipe, cfg, data, z0, schedule, collaborators, encoders, diffusers)

    # 5. export in the project's format
    if engine.is_main:
        export(run, out, cfg, recipe, vae, collaborators, encoders, diffusers, model_vocab, scale, len(data), init)
        log(f"exported to {out}")
    engine.barrier()
    return out


def _load_collaborator(path: Path, unet, enc, name: str) -> None:
    w = torch.load(path, weights_only=True)
    try:
        unet.load_state_dict(w["unet"])
        enc.load_state_dict(w["encoder"])
    except RuntimeError as e:
        raise ValueError(f"{path} holds a collaborator of another architecture or encoder than the "
                         f"config's {name!r} (move it aside to train a new one): {str(e)[:300]}") from e


def export(run: Path, out: Path, cfg: ModelConfig, recipe: Recipe, vae, collaborators, encoders, diffusers,
           model_vocab: Path | None, scale: float, images: int, init: WarmStart | None) -> None:
    model = CollaborativeModel(cfg)
    model.vae.load_state_dict(vae.state_dict())
    for k in collaborators:
        model.collaborators[k].load_state_dict(collaborators[k].state_dict())
        model.encoders[k].load_state_dict(encoders[k].state_dict())
        if k in diffusers:
            model.diffusers[k].load_state_dict(diffusers[k].state_dict())
    save_pretrained(model, out, storage_dtype=torch.float16)  # half the file; loads as float32
    if model_vocab is not None:
        (out / "vocab.txt").write_text(model_vocab.read_text())
    record = {"recipe": asdict(recipe), "images": images, "scale_factor": scale,
              "stage_seconds": stage_seconds(run, cfg), "stage_steps": stage_steps(run, cfg)}
    if init is not None and init.directory is not None and (init.directory / "training.json").exists():
        # a continued training: its cost includes the run it started from
        before = json.loads((init.directory / "training.json").read_text())
        record["continued_from"] = before
        now, then = record["stage_seconds"], before.get("stage_seconds", {})
        record["stage_seconds"] = {k: round(now.get(k, 0.0) + then.get(k, 0.0), 1) for k in then | now}
    (out / "training.json").write_text(json.dumps(record, indent=1))


def archive_if_other_modalities(engine: Engine, run: Path, diff_file: Path, names: set[str], log) -> None:
    """Diffusers trained for another modality set are moved aside (kept, never overwritten)."""
    if not diff_file.exists():
        return
    old = set(torch.load(diff_file, weights_only=True))
    if old == names:
        return
    engine.barrier()
    tag = "_".join(sorted(old))
    if engine.is_main:
        for suffix in (".pt", ".ckpt", ".state.pt", ".loss.jsonl"):
            f = run / f"diffusers{suffix}"
            if f.exists():
                f.rename(run / f"diffusers.{tag}{suffix}")
        log(f"diffusers were trained for {sorted(old)}; kept as diffusers.{tag}.pt, retraining for {sorted(names)}")
    engine.barrier()


def stage_seconds(run: Path, cfg: ModelConfig) -> dict[str, float]:
    """Training wall seconds of each stage this model used (VAE, collaborators, diffusers) trained in
    this run (not one hard-linked from an earlier run)."""
    from collab.train.report import stage_logs, wall_seconds

    logs = stage_logs(run, own_only=True)
    return {s: round(wall_seconds(logs[s]), 1) for s in _stages(cfg) if s in logs}


def stage_steps(run: Path, cfg: ModelConfig) -> dict[str, int]:
    """Steps each stage trained in this run (the last logged step; stages taken over are absent)."""
    from collab.train.report import stage_logs

    logs = stage_logs(run, own_only=True)
    return {s: int(logs[s][-1]["step"]) for s in _stages(cfg) if s in logs}


def _stages(cfg: ModelConfig) -> list[str]:
    """The stages a model of `cfg` is made of (a run folder may hold others: the joint baseline
    shares the demo's run, whose diffusers it does not use)."""
    diffusers = ["diffusers"] if any(m.diffuser for m in cfg.modalities) else []
    return ["vae", "decoder", *(f"ldm_{m.name}" for m in cfg.modalities), *diffusers]

