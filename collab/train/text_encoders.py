"""Which text encoder should the demo's text collaborator use? Measured, and the answer was MiniLM.

    python -m collab.train.text_encoders --run runs/demo --model <a demo with a from-scratch text encoder> \
        --ldm-steps 3000 --evaluator checkpoints/evaluator --out checkpoints/demo/report/text_encoders.json

Trains a second text-to-face collaborator on the same latents and recipe (give `--ldm-steps` the
compared collaborator's total), conditioned on a frozen pre-trained all-MiniLM-L6-v2 (token states
through a trained LayerNorm + Linear, `collab.encoders.PretrainedTextEncoder`), and compares it with
the model's text collaborator whose small BERT-style encoder was trained from scratch. Both sample
the held-out faces from their captions, in training phrasings and in held-out paraphrases, and the
evaluator's classifier scores age, beard and gender. Resumable like every stage. The result in
checkpoints/demo/report/text_encoders.json (MiniLM better on paraphrases) is why the demo config's
text modality now uses MiniLM; the from-scratch demo it was measured against is in git history.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

def train_minilm_collaborator(run: Path, ldm_steps: int | None = None, log=print):
    """A text collaborator on the frozen MiniLM (`PretrainedTextEncoder`), trained on the run's latents
    with the demo recipe (the backbone's token states are computed once and cached in the run)."""
    from collab.config import load_config
    from collab.encoders import PretrainedTextEncoder, PretrainedTextEncoderConfig
    from collab.schedule import DiffusionSchedule
    from collab.train.data import WorldDataset
    from collab.train.demo import DemoRecipe, load_world
    from collab.train.engine import Engine, EngineConfig
    from collab.train.loop import apply_weights, train
    from collab.train.losses import ldm_loss
    from collab.train.stages import latent_sampler
    from collab.unet import UNetModel

    recipe = DemoRecipe()
    if ldm_steps:  # match the step count of the collaborator it is compared with
        recipe = replace(recipe, ldm=replace(recipe.ldm, steps=ldm_steps))
    world, _, _ = load_world(run, recipe, log)
    base = load_config("demo")
    text = next(m for m in base.modalities if m.kind == "text")
    enc_cfg = PretrainedTextEncoderConfig(context_dim=text.collaborator.context_dim)
    log(f"encoding {len(world.captions)} captions with MiniLM (cached in {run})")
    states = world.frozen_text_states(enc_cfg)
    lat = torch.load(run / "latents.pt", weights_only=True)
    schedule = DiffusionSchedule.linear(base.timesteps, base.linear_start, base.linear_end)
    unet, enc = UNetModel(text.collaborator), PretrainedTextEncoder(enc_cfg)
    path = run / "ldm_text_minilm.pt"
    if path.exists():
        w = torch.load(path, weights_only=True)
    else:
        z0 = latent_sampler(None, lat["scale"])  # draws from the cached posteriors

        def step(batch, g):
            return ldm_loss(unet, enc, batch["text_states"], z0(batch, g), schedule, g, recipe.p2_gamma)

        data = WorldDataset(world, lat, ("text_states",), states)
        w = train(Engine(EngineConfig(accelerator="cpu"), run), run, "ldm_text_minilm", {"unet": unet, "encoder": enc},
                  step, data, recipe.ldm)
        torch.save(w, path)
    apply_weights({"unet": unet, "encoder": enc}, w)
    return unet.eval().requires_grad_(False), enc.eval().requires_grad_(False)


def compare(run: Path, model_dir: str, evaluator: str, n: int, steps: int, ldm_steps: int | None = None,
            log=print) -> dict:
    from collab import kinds
    from collab.eval import EvalConfig, attribute_metrics, held_out_pairs
    from collab.minilm import text_input
    from collab.evaluator import Evaluator
    from collab.pipeline import generate
    from collab.registry import load_model

    model = load_model(model_dir)
    text = next(m for m in model.config.modalities if m.kind == "text")
    if not kinds.kind_of(text.encoder).needs_vocab:
        raise SystemExit(f"{model_dir}'s text collaborator already uses a pre-trained encoder; compare against a "
                         "model whose text encoder was trained from scratch (the demo before the switch: "
                         "git show 61bfd48:checkpoints/demo/...)")
    name = text.name
    unet, enc = train_minilm_collaborator(run, ldm_steps, log)
    tok = text_input(enc.config.max_seq_len)
    ev = Evaluator.load(evaluator)
    data = held_out_pairs(n, model.config.image_size)
    cfg = EvalConfig(n=n, steps=steps)
    results = {}
    for phrasing, texts in (("training phrasings", data.captions), ("held-out paraphrases", data.paraphrases)):
        for variant in ("from scratch", "MiniLM (frozen)"):
            images, t0 = [], time.perf_counter()
            for b, i in enumerate(range(0, n, cfg.batch_size)):
                chunk = texts[i:i + cfg.batch_size]
                kw = {"conditions": {name: chunk}}
                if variant.startswith("MiniLM"):
                    ctx = enc(tok.prepare(chunk))
                    kw = {"conditions": {}, "contexts": {name: ctx}, "collaborators": {name: unet}}
                images.append(generate(model, **kw, steps=steps, eta=1.0, seed=b, batch_size=len(chunk)).images)
            acc = attribute_metrics(ev, np.concatenate(images), data.targets)
            results[f"{variant}, {phrasing}"] = acc | {"seconds": round(time.perf_counter() - t0, 1)}
            log(f"{variant:16} {phrasing:21} " + " ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--model", default="checkpoints/demo")
    ap.add_argument("--evaluator", default="checkpoints/evaluator")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps per sample")
    ap.add_argument("--ldm-steps", type=int, default=None,
                    help="training steps of the MiniLM collaborator (default: the recipe's; give the compared "
                         "from-scratch collaborator's total for a fair comparison)")
    ap.add_argument("--out", type=Path, default=Path("checkpoints/demo/report/text_encoders.json"))
    args = ap.parse_args()
    res = compare(args.run, args.model, args.evaluator, args.n, args.steps, args.ldm_steps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
