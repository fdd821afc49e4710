"""Reproduce the paper's kind of table on the embedded face world.

    python -m collab.eval --model demo --evaluator checkpoints/evaluator --out results/eval [--n 100]

Writes results.json, results.md and PNG plots into --out; `--edits N` adds the edit evaluation,
`--frontier` the layout-vs-text frontier, `--only ROW...` merges new rows into an existing run.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from collab.editing import EDIT_PRESETS, EditSettings, preset_name
from collab.eval.edits import evaluate_edits
from collab.eval.heldout import HELDOUT_WORLD, held_out_pairs
from collab.eval.methods import Method, beyond_two_methods, default_methods
from collab.eval.report import markdown, merge_reports, write_outputs
from collab.eval.sampling import EvalConfig
from collab.eval.studies import evaluate
from collab.evaluator import Evaluator
from collab.model import CollaborativeModel
from collab.samplers import SAMPLERS


def _model_dir(source: str) -> Path | None:
    from collab.registry import MODELS, checkpoints_dir

    path = Path(source)
    if path.is_dir():
        return path
    if source in MODELS and (checkpoints_dir() / source).is_dir():
        return checkpoints_dir() / source
    return None


def _try_load(source: str) -> CollaborativeModel | None:
    from collab.registry import load_model

    if source == "none" or _model_dir(source) is None:
        return None
    return load_model(source)


def stage_seconds_of(source: str) -> dict[str, float] | None:
    """Per-stage training seconds recorded in a model directory's training.json (None if absent)."""
    d = _model_dir(source)
    f = d / "training.json" if d else None
    if f is None or not f.exists():
        return None
    return json.loads(f.read_text()).get("stage_seconds")


def run_frontier_study(model: CollaborativeModel, ev: Evaluator, cfg: EvalConfig, args) -> None:
    from collab.eval.frontier import TEXT_STRENGTHS, TEXT_WEIGHTS, choose_strength, frontier_markdown, \
        frontier_settings, run_frontier, write_frontier

    settings = frontier_settings(model, args.frontier_weights or TEXT_WEIGHTS, args.frontier_strengths or TEXT_STRENGTHS,
                                 args.frontier_rules)
    result = run_frontier(model, ev, cfg, settings)
    if args.choose_strength:
        result["choice"] = choose_strength(result["points"], args.frontier_rules[0])
    files = write_frontier(result, args.out)
    print(frontier_markdown(result))
    if "choice" in result:
        ch = result["choice"]
        print(f"default text strength: {ch['strength']:g} ({ch['why']}; chosen mIoU {ch['chosen']['miou']:.3f} / "
              f"attr {ch['chosen']['attr_acc']:.3f}, composable {ch['composable']['miou']:.3f} / "
              f"{ch['composable']['attr_acc']:.3f})")
    print("wrote " + ", ".join(str(f) for f in files))

def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m collab.eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="model name or directory")
    ap.add_argument("--evaluator", default="checkpoints/evaluator")
    ap.add_argument("--out", type=Path, default=Path("results/eval"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--sampler", default="ddim", choices=tuple(SAMPLERS))
    ap.add_argument("--rule", choices=("paper", "official"), default=None)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--diversity-pairs", type=int, default=8)
    ap.add_argument("--no-sampler-study", action="store_true")
    ap.add_argument("--sampler-n", type=int, default=40)
    ap.add_argument("--no-denoising-study", action="store_true",
                    help="skip the per-timestep noise-prediction error table")
    ap.add_argument("--joint", default="joint", help="the jointly trained baseline (name or directory) for the "
                    "'beyond two modalities' table, used when present; 'none' to skip")
    ap.add_argument("--no-beyond", action="store_true", help="only the paper's table (mask + text)")
    ap.add_argument("--only", nargs="+", default=None, metavar="ROW",
                    help="run only these rows (exact names) and merge them into an existing results.json in --out "
                         "with the same settings, e.g. a row whose model was trained later")
    ap.add_argument("--edits", type=int, default=0, help="also evaluate this many edits (fast preset)")
    ap.add_argument("--only-edits", action="store_true", help="skip the generation table")
    ap.add_argument("--edit-alpha", type=float, default=1.0, help="alpha of the evaluated edits")
    ap.add_argument("--edit-strength", type=float, default=1.0,
                    help="strength of the edited modality in the mix, times the model's default (1 = the default "
                         "mix; e.g. 2 lets a text edit count for more against the kept mask); its inversion runs under "
                         "the same mix")
    ap.add_argument("--edit-preset", choices=EDIT_PRESETS, default="fast", type=preset_name,
                    help="optimisation settings of the evaluated edits (faithful, also called official: "
                         "500 + 1000 iterations)")
    ap.add_argument("--world-seed", type=int, default=HELDOUT_WORLD,
                    help=f"face-world seed of the conditions (default {HELDOUT_WORLD}, the evaluation's; the demo "
                         "trained on 0): another one is a validation set, e.g. to choose a model's default strengths")
    ap.add_argument("--frontier", action="store_true",
                    help="also the layout-vs-text frontier (collab.eval.frontier): frontier.md/.json/.png")
    ap.add_argument("--only-frontier", action="store_true", help="only the frontier")
    ap.add_argument("--frontier-weights", type=float, nargs="+", default=None, help="composable text weights")
    ap.add_argument("--frontier-strengths", type=float, nargs="+", default=None, help="collaborative text strengths")
    ap.add_argument("--choose-strength", action="store_true",
                    help="with the frontier on a validation world: pick the model's default text strength "
                         "(collab.eval.frontier.choose_strength) under the first --frontier-rules rule")
    ap.add_argument("--frontier-rules", nargs="+", choices=("paper", "official"), default=("paper", "official"),
                    help="the combination rules of the collaborative curves")
    return ap


def main(argv: list[str] | None = None) -> None:
    ap = parser()
    args = ap.parse_args(argv)
    if args.choose_strength and not (args.frontier or args.only_frontier):
        ap.error("--choose-strength reads the frontier: add --frontier or --only-frontier")
    if args.choose_strength and args.world_seed == HELDOUT_WORLD:
        ap.error(f"--choose-strength reads validation conditions: give a --world-seed other than {HELDOUT_WORLD} "
                 "(the evaluation's)")
    if not (Path(args.evaluator) / "evaluator.yaml").exists():
        ap.error(f"no evaluator in {args.evaluator} (train one: python -m collab.train.evaluator --out {args.evaluator})")

    from collab.registry import load_model

    import torch

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    model = load_model(args.model)
    ev = Evaluator.load(args.evaluator)
    cfg = EvalConfig(n=args.n, steps=args.steps, eta=args.eta, sampler=args.sampler, batch_size=args.batch_size,
                     rule=args.rule, seed=args.seed, diversity_pairs=args.diversity_pairs,
                     sampler_study=not args.no_sampler_study, sampler_n=args.sampler_n,
                     denoising_study=not args.no_denoising_study, world_seed=args.world_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.edits:
        run_edit_study(model, ev, args)
    if args.frontier or args.only_frontier:
        run_frontier_study(model, ev, cfg, args)
    if not (args.only_edits or args.only_frontier):
        run_tables(model, ev, cfg, args, ap)


def run_edit_study(model: CollaborativeModel, ev: Evaluator, args) -> None:
    settings = EditSettings.preset(args.edit_preset)
    res = evaluate_edits(model, ev, args.edits, settings=settings, alpha=args.edit_alpha, steps=args.steps,
                         strength=args.edit_strength, world_seed=args.world_seed)
    # the faithful preset's files keep the name they had when the preset was called "official"
    tag = "official" if args.edit_preset == "faithful" else args.edit_preset
    name = "edits.json" if (args.edit_preset, args.edit_alpha) == ("fast", 1.0) else \
        f"edits_{tag}_alpha{args.edit_alpha:g}.json"
    if args.edit_strength != 1.0:
        name = name.replace(".json", f"_strength{args.edit_strength:g}.json")
    if args.world_seed != HELDOUT_WORLD:  # a validation world never overwrites the evaluation's edits
        name = name.replace(".json", f"_world{args.world_seed}.json")
    (args.out / name).write_text(json.dumps(res, indent=1))
    print(json.dumps(res["summary"], indent=1))


def table_sections(model: CollaborativeModel, args) -> tuple[dict[str, list[Method]], dict[str, CollaborativeModel]]:
    """The tables to fill (the paper's, and "beyond two modalities" unless --no-beyond) and the extra
    models their rows sample from (the joint baseline when present)."""
    extra, sections = {}, {"paper": default_methods(model)}
    if not args.no_beyond:
        joint = _try_load(args.joint)
        if joint is not None:
            extra["joint"] = joint
        beyond = beyond_two_methods(model, joint)
        if beyond:
            sections["beyond two modalities"] = beyond
    return sections, extra


def run_tables(model: CollaborativeModel, ev: Evaluator, cfg: EvalConfig, args, ap: argparse.ArgumentParser) -> None:
    sections, extra = table_sections(model, args)
    seconds = {k: stage_seconds_of(src) for k, src in (("main", args.model), ("joint", args.joint))}
    previous = None
    if args.only:
        known = {m.name for ms in sections.values() for m in ms}
        unknown = sorted(set(args.only) - known)
        if unknown:
            ap.error(f"unknown rows {unknown}; rows are: {', '.join(sorted(known))}")
        if (args.out / "results.json").exists():
            previous = json.loads((args.out / "results.json").read_text())
        cfg.sampler_study = False
        cfg.denoising_study = False
    run_sections = {t: [m for m in ms if not args.only or m.name in args.only] for t, ms in sections.items()}
    t0 = time.time()
    report, gallery = evaluate(model, ev, cfg, sections={t: ms for t, ms in run_sections.items() if ms},
                               extra_models=extra, stage_seconds=seconds)
    report.config["wall_seconds"] = round(time.time() - t0, 1)
    if previous is not None:
        report = merge_reports(previous, report, sections)
        if (args.out / "gallery.npz").exists():
            with np.load(args.out / "gallery.npz") as old:
                gallery = {k: old[k] for k in old.files} | gallery
        order = [n for names in report.sections.values() for n in names]
        gallery = {k: gallery[k] for k in order if k in gallery}
    files = write_outputs(report, gallery, args.out, held_out_pairs(8, model.config.image_size, cfg.world_seed))
    print(markdown(report))
    print("wrote " + ", ".join(str(f) for f in files))
