"""Which text encoder should the demo's text collaborator use? Measure it.

    python -m collab.train.text_encoders --run runs/demo --model checkpoints/demo \
        --evaluator checkpoints/evaluator --out checkpoints/demo/report/text_encoders.json

Trains a second text-to-face collaborator on the same latents, recipe and step count as the demo's
(whose encoder is a small BERT-style transformer trained from scratch with it), but conditioned on
a frozen pre-trained all-MiniLM-L6-v2 (token states through a trained linear projection). Then both
sample the held-out faces from their captions, in training phrasings and in held-out paraphrases,
and the evaluator's classifier scores age, beard and gender. Resumable like every stage.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

MAX_TOKENS = 32  # face-world captions are < 30 wordpieces


class ProjectedStates(nn.Module):
    """Frozen token states [B, L, 384] -> context [B, L, dim]; the only trained part of the encoder."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(states.float()))


@torch.no_grad()
def minilm_states(texts: list[str], batch: int = 256) -> torch.Tensor:
    from collab.minilm import load_minilm, package_dir
    from collab.tokenizer import WordPieceTokenizer

    lm = load_minilm()
    tok = WordPieceTokenizer.from_vocab_file(package_dir() / "vocab.txt")
    out = []
    for i in range(0, len(texts), batch):
        ids = tok.encode(texts[i:i + batch], max_length=MAX_TOKENS).ids
        out.append(lm(ids, ids != 0).to(torch.float16))
    return torch.cat(out)


def train_minilm_collaborator(run: Path, log=print):
    from collab.config import load_config
    from collab.schedule import DiffusionSchedule
    from collab.train.demo import DemoRecipe, draw_latents, load_world
    from collab.train.loop import apply_weights, train
    from collab.train.losses import ldm_loss
    from collab.unet import UNetModel

    recipe = DemoRecipe()
    world, tok, _ = load_world(run, recipe, log)
    base = load_config("demo")
    text = next(m for m in base.modalities if m.kind == "text")
    cache = run / "minilm_states.pt"
    if not cache.exists():
        table = json.loads((run / "data" / "captions.json").read_text())
        captions = [table[name]["Beard_and_Age"] for name in world.names]
        log(f"encoding {len(captions)} captions with MiniLM")
        torch.save(minilm_states(captions), cache)
    states = torch.load(cache, weights_only=True)
    lat = torch.load(run / "latents.pt", weights_only=True)
    schedule = DiffusionSchedule.linear(base.timesteps, base.linear_start, base.linear_end)
    unet, enc = UNetModel(text.collaborator), ProjectedStates(states.shape[-1], text.collaborator.context_dim)
    path = run / "ldm_text_minilm.pt"
    if path.exists():
        w = torch.load(path, weights_only=True)
    else:
        n = len(world.names)

        def step(g, _):
            idx = torch.randint(0, n, (recipe.ldm.batch_size,), generator=g)
            z = draw_latents(lat, idx, g) * lat["scale"]
            return ldm_loss(unet, enc, states[idx], z, schedule, g, recipe.p2_gamma)

        w = train(run, "ldm_text_minilm", {"unet": unet, "encoder": enc}, step, recipe.ldm)
        torch.save(w, path)
    apply_weights({"unet": unet, "encoder": enc}, w)
    return unet.eval().requires_grad_(False), enc.eval().requires_grad_(False)


def compare(run: Path, model_dir: str, evaluator: str, n: int, steps: int, log=print) -> dict:
    from collab.eval import EvalConfig, attribute_metrics, held_out_pairs
    from collab.evaluator import Evaluator
    from collab.pipeline import generate
    from collab.registry import load_model

    unet, enc = train_minilm_collaborator(run, log)
    model = load_model(model_dir)
    name = next(m.name for m in model.config.modalities if m.kind == "text")
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
                    ctx = enc(minilm_states(chunk))
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
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("checkpoints/demo/report/text_encoders.json"))
    args = ap.parse_args()
    res = compare(args.run, args.model, args.evaluator, args.n, args.steps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
