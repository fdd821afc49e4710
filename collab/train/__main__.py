"""Train Collaborative Diffusion models from a recipe, on one CPU or on GPUs over nodes.

    python -m collab.train --recipe demo --run runs/demo --out checkpoints/demo
    python -m collab.train --recipe official_256 --data /data/celeba256 --run runs/o256 --out checkpoints/o256 \\
        --accelerator cuda --devices 8 --precision bf16-mixed
    python -m collab.train --recipe official_256 --data /data/celeba256 --config my_three_modalities.yaml \\
        --init 256_mask.ckpt 256_text.ckpt --keep mask text --run runs/sketch --out checkpoints/sketch
    python -m collab.train --recipe demo --stage evaluator --out checkpoints/evaluator

Every stage (VAE, collaborators, dynamic diffusers by Algorithm 1, the joint baseline with
`--config joint`, the evaluator with `--stage evaluator`) runs on Lightning Fabric; re-running the
same command resumes. Hyper-parameters come from the recipe (collab/train/recipes/*.yaml), changed
with `--set stage.key=value`; the hardware from the engine flags.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from collab.train.engine import Engine, EngineError, add_engine_args, engine_config_from_args
from collab.train.loop import TrainingError
from collab.train.recipe import RecipeError, load_recipe


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m collab.train", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--recipe", default="demo", help="demo, official_256, official_512 or a recipe YAML file")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe value: ldm.lr=1e-4, vae.steps=500, data.workers=4 (repeatable)")
    ap.add_argument("--run", type=Path, default=Path("runs/train"), help="working directory (resumable)")
    ap.add_argument("--out", type=Path, default=None, help="where the model (or evaluator) is exported")
    ap.add_argument("--data", default=None, help="root of an official layout (sets data.source=layout)")
    ap.add_argument("--config", default=None, help="model config to train (default: the recipe's model)")
    ap.add_argument("--vocab", default=None, help="bert-base-uncased vocab.txt for text encoders trained from scratch")
    ap.add_argument("--init", nargs="+", default=None, metavar="MODEL",
                    help="an exported model directory, or official .ckpt files, to start from")
    ap.add_argument("--keep", nargs="+", default=(), metavar="MODALITY",
                    help="with --init: take these collaborators as they are (e.g. train only diffusers)")
    ap.add_argument("--only", nargs="+", default=(), metavar="MODALITY",
                    help="train only these collaborators, then stop (one process per collaborator in one --run)")
    ap.add_argument("--until", choices=("decoder", "collaborators"), help="stop after this stage")
    ap.add_argument("--stage", choices=("model", "evaluator"), default="model",
                    help="model: VAE, collaborators, diffusers; evaluator: the face-world evaluator")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per process")
    add_engine_args(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = list(args.overrides)
        if args.data:
            overrides = ["data.source=layout", f"data.root={args.data}", *overrides]
        recipe = load_recipe(args.recipe, overrides)
        if recipe.data_source == "layout" and not recipe.data_root:
            raise RecipeError(f"recipe {recipe.name} trains on files in the official layout: give --data DIR")
        cfg = engine_config_from_args(args)
    except (RecipeError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    engine = Engine(cfg, args.run)
    t0 = time.time()

    def log(s: str) -> None:
        if engine.is_main:
            print(f"[{time.time() - t0:7.0f}s] {s}", flush=True)

    try:
        run(args, recipe, engine, log)
    except (ValueError, FileNotFoundError, TrainingError) as e:  # recipe, engine, data and loss errors
        print(f"error: {e}", file=sys.stderr)
        return 2
    log("done")
    return 0


def run(args, recipe, engine: Engine, log) -> None:
    if args.stage == "evaluator":
        from collab.train.evaluator import train as train_evaluator

        out = args.out or Path("checkpoints/evaluator")
        metrics = train_evaluator(out, recipe.evaluator.steps, recipe.size, recipe.evaluator.batch_size,
                                  recipe.evaluator.lr, recipe.seed, None, engine=engine, loop=recipe.evaluator,
                                  workers=recipe.workers if engine.cfg.workers is None else engine.cfg.workers)
        log(f"evaluator in {out}: {metrics}")
        return
    out = args.out or Path("checkpoints") / recipe.name
    model = args.config or recipe.model
    init = args.init[0] if args.init and len(args.init) == 1 else args.init
    if recipe.data_source == "world":
        from collab.train.demo import run_demo

        run_demo(args.run, out, recipe, base_config=model, log=log, until=args.until,
                 init=Path(init) if isinstance(init, str) else init, keep=tuple(args.keep), engine=engine,
                 only=tuple(args.only))
        return
    from collab.config import load_config
    from collab.train.runner import LayoutSource, run_recipe
    from collab.train.stages import WarmStart

    if args.keep and not init:
        raise ValueError("--keep needs --init (the model to keep the collaborators from)")
    warm = WarmStart.load(init, config=model) if init else None
    source = LayoutSource(Path(recipe.data_root), recipe, args.vocab)
    run_recipe(engine, args.run, out, recipe, source, load_config(model), log, args.until, warm, tuple(args.keep),
               tuple(args.only))


if __name__ == "__main__":
    sys.exit(main())
