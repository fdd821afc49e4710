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
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from collab import kinds
from collab.config import ModelConfig, load_config
from collab.encoders import PretrainedTextEncoder, PretrainedTextEncoderConfig
from collab.tokenizer import WordPieceTokenizer
from collab.train.engine import Engine, EngineConfig, add_engine_args, engine_config_from_args
from collab.train.loop import TrainingError
from collab.train.recipe import Recipe, load_recipe
from collab.train.runner import archive_if_other_modalities, run_recipe
from collab.train.stages import WarmStart, condition_keys, export_vocab  # noqa: F401 (export_vocab: API)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
DemoRecipe = Recipe  # the demo's numbers are Recipe's defaults (recipes/demo.yaml)


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


# ---------------------------------------------------------------- the world as a data source


class WorldSource:
    """The rendered world, held in memory (it is small), behind the Dataset interface of the real-data
    path; its latents are computed once into <run>/latents.pt (mean and std of every posterior)."""

    def __init__(self, engine: Engine, world: WorldTensors, tok: WordPieceTokenizer, vocab_path: Path) -> None:
        self.engine, self.world, self.vocab_path, self.vocab_size = engine, world, vocab_path, tok.vocab_size

    def images(self):
        from collab.train.data import WorldDataset

        return WorldDataset(self.world, keys=("image",))

    def latents(self, engine: Engine, run: Path, vae, scale_hint, log):
        lat_file = run / "latents.pt"
        if not lat_file.exists() and engine.is_main:
            n = len(self.world.names)
            with torch.no_grad():
                posts = [vae.encode(self.world.batch_images(torch.arange(i, min(i + 64, n))).to(engine.device))
                         for i in range(0, n, 64)]
            mean = torch.cat([p.mean.cpu() for p in posts])
            std = torch.cat([p.std.cpu() for p in posts])
            torch.save({"mean": mean, "std": std, "scale": float(1.0 / mean.std())}, lat_file)
        engine.barrier()
        lat = torch.load(lat_file, weights_only=True)
        return lat, lat["scale"]

    def dataset(self, cfg: ModelConfig, lat, images: bool = False):
        from collab.train.data import WorldDataset

        keys, states = condition_keys(cfg), None
        frozen = [enc for m in cfg.modalities for _, kind, enc in m.inputs()
                  if kind == "text" and kinds.kind_of(enc).frozen_backbone]
        if frozen:
            if self.engine.is_main:  # rank 0 computes and caches the frozen states; the others read them
                self.world.frozen_text_states(frozen[0])
            self.engine.barrier()
            states, keys = self.world.frozen_text_states(frozen[0]), keys | {"text_states"}
        if "attributes" in keys:
            from collab.train.runner import check_attributes

            check_attributes(cfg, self.world.attribute_names)
        if "text" in keys and states is None:
            keys = keys | {"tokens"}
        return WorldDataset(self.world, lat, tuple(keys | ({"image"} if images else set())), states)


def run_demo(run: Path, out: Path, recipe: Recipe, base_config: str = "demo", log=print,
             until: str | None = None, init: Path | None = None, keep: tuple[str, ...] = (),
             engine: Engine | None = None, only: tuple[str, ...] = ()) -> Path:
    """Render the world (rank 0), then every stage of `base_config` on it (collab.train.runner)."""
    engine = engine or Engine(EngineConfig(accelerator="cpu"), run)
    run.mkdir(parents=True, exist_ok=True)
    if keep and init is None:
        raise ValueError("keeping a collaborator as it is needs --init (the model to keep it from)")
    warm = WarmStart.load(init) if init else None
    if engine.is_main:
        load_world(run, recipe, log)
    engine.barrier()
    world, tok, vocab_path = load_world(run, recipe, log)
    source = WorldSource(engine, world, tok, vocab_path)
    return run_recipe(engine, run, out, recipe, source, load_config(base_config), log, until, warm, keep, only)


def _archive_if_other_modalities(run: Path, diff_file: Path, names: set[str], log) -> None:
    archive_if_other_modalities(Engine(EngineConfig(accelerator="cpu")), run, diff_file, names, log)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/demo"), help="working directory (resumable)")
    ap.add_argument("--out", type=Path, default=Path("checkpoints/demo"))
    ap.add_argument("--recipe", default="demo", help="recipe name or YAML file (collab/train/recipes)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe value, e.g. --set ldm.lr=1e-4 (repeatable)")
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
    ap.add_argument("--only", nargs="+", default=(), metavar="MODALITY",
                    help="train only these collaborators, then stop (run one process per collaborator "
                         "in the same --run; the decoder stage is left to the process without --only)")
    ap.add_argument("--diffuser-steps", type=int, default=None, help="dynamic diffuser steps (default: the recipe's)")
    ap.add_argument("--p2-gamma", type=float, default=None,
                    help="P2 loss weighting exponent of the collaborators (0 = plain loss)")
    ap.add_argument("--diffuser-p2-gamma", type=float, default=None,
                    help="P2 loss weighting exponent of the dynamic diffusers (0 = Algorithm 1's plain loss)")
    add_engine_args(ap, default_accelerator="cpu", default_logger="none")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    recipe = recipe.scaled(args.scale) if args.scale != 1.0 else recipe
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
    try:
        recipe = recipe.with_overrides(args.overrides)
        engine = Engine(engine_config_from_args(args), args.run)
        t0 = time.time()
        run_demo(args.run, args.out, recipe, base_config=args.config,
                 log=lambda s: print(f"[{time.time() - t0:7.0f}s] {s}", flush=True) if engine.is_main else None,
                 until=args.until, init=args.init, keep=tuple(args.keep), engine=engine, only=tuple(args.only))
    except (ValueError, FileNotFoundError, TrainingError) as e:  # recipe, engine, data and loss errors
        raise SystemExit(f"error: {e}") from None
    if engine.is_main:
        print(f"total wall time {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
