"""Command line: `collab generate | text2image | mask2image | edit | check`.

Every input is validated before the model is loaded, and outputs are written only after sampling
succeeded (all files under temporary names first, then renamed), so a failure leaves no half-written
folder. Exit codes: 0 done, 2 something the user gave is wrong (an argument, a value, a file),
1 the work failed (a checkpoint that does not load, sampling, writing), 130 interrupted. Errors are
one line on stderr, never a traceback (COLLAB_DEBUG=1 shows it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from collab import kinds, validate
from collab.combination import MODES, RULES
from collab.editing import EDIT_PRESETS, EDIT_STARTS, preset_name
from collab.samplers import SAMPLERS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="demo", help="registry name (demo, official_256, official_512) or a collab "
                                                   "model directory (default: demo)")
    g.add_argument("--ckpt", nargs="+", type=Path, help="official .ckpt files (codiff, or text/mask uni-modal)")
    g.add_argument("--config", help="config name or YAML for --ckpt (default: inferred from the keys)")
    g.add_argument("--vocab", type=Path, help="bert-base-uncased vocab.txt (file or directory)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow checkpoints that need pickle code execution (only for files you trust)")
    g.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (cuda when present)")
    g.add_argument("--dtype", default="float32", choices=sorted(DTYPES),
                   help="precision of the UNets (encoders and VAE stay float32)")


def _add_condition_args(p: argparse.ArgumentParser, what: str = "") -> None:
    """--cond NAME=VALUE for any modality, and one flag per input a registered kind reads (--text,
    --mask, --attributes, ...) as its shorthand."""
    g = p.add_argument_group("conditions")
    g.add_argument("--cond", action="append", default=[], metavar="NAME=VALUE",
                   help=f"a {what}condition of any modality of the model, by its name or the input it reads, "
                        "e.g. attributes=male,beard or text='He is old.' (repeatable)")
    for name, kind in kinds.inputs().items():
        g.add_argument(f"--{name}", help=f"{what}{name} condition: {kind.help}")


def _add_sampling_args(p: argparse.ArgumentParser, mode_choice: bool) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, default=50)
    g.add_argument("--eta", type=float, default=1.0, help="DDIM eta (official scripts: 1.0)")
    g.add_argument("--sampler", default="ddim", choices=SAMPLERS)
    g.add_argument("--batch-size", type=int, default=1)
    if mode_choice:
        g.add_argument("--mode", default="collaborative", choices=MODES)
        g.add_argument("--rule", choices=RULES, help="influence rule (default: the model's; official models: official)")
        g.add_argument("--strength", nargs="+", action="extend", default=[], metavar="NAME=S",
                       help="multiply a modality's weight by S (>= 0) after the softmax and the rule, then "
                            "renormalise per pixel; S a number or a .npy [H, W] map, e.g. text=1.5; replaces "
                            "the model's default strength of that modality (its model_index.json entry)")
        g.add_argument("--window", nargs="+", action="extend", default=[], metavar="NAME=START:END",
                       help="the part of the run in which a modality takes part (0 = first step, 1 = last), "
                            "e.g. mask=0:0.6; outside it its weight is 0")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default: outputs)")
    o.add_argument("--save-influence", action="store_true", help="save the influence-map grid per image")
    o.add_argument("--save-intermediates", action="store_true", help="save decoded x_t and pred_x0 per step")
    o.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="collab", description="Collaborative Diffusion: multi-modal face generation")
    sub = ap.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="any conditions of the model's modalities (text, mask, ...) -> faces")
    _add_condition_args(gen)
    _add_model_args(gen)
    _add_sampling_args(gen, mode_choice=True)
    t2i = sub.add_parser("text2image", help="text collaborator alone")
    t2i.add_argument("--text", required=True)
    _add_model_args(t2i)
    _add_sampling_args(t2i, mode_choice=False)
    m2i = sub.add_parser("mask2image", help="mask collaborator alone")
    m2i.add_argument("--mask", type=Path, required=True)
    _add_model_args(m2i)
    _add_sampling_args(m2i, mode_choice=False)
    ed = sub.add_parser("edit", help="edit a real face towards a target text and/or mask (Algorithm 3)")
    ed.add_argument("--image", type=Path, required=True, help="input face (any size: centre-cropped and resized)")
    _add_condition_args(ed, "target ")
    ed.add_argument("--alpha", type=float, default=1.0, help="interpolation alpha*c_target + (1-alpha)*c_opt")
    ed.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0],
                    help="alpha values of the strip")
    ed.add_argument("--preset", choices=EDIT_PRESETS, default="fast", type=preset_name,
                    help="fast: sized for a CPU; faithful (also: official): the official 500 + 1000 iterations, "
                         "lr 1e-3 / 1e-6")
    ed.add_argument("--start", choices=EDIT_STARTS, default="inversion",
                    help="inversion: sample from the input's DDIM inversion (alpha 0 returns the input with "
                         "--eta 0); noise: a fresh start code from --seed, Algorithm 3 as written")
    ed.add_argument("--session", type=Path, help="reuse a saved edit session (skips the optimisation)")
    _add_model_args(ed)
    _add_sampling_args(ed, mode_choice=False)
    ed.set_defaults(eta=0.0)  # deterministic: with --start inversion, alpha 0 then returns the input
    chk = sub.add_parser("check", help="verify against golden vectors (= python -m collab.reference_check)")
    chk.add_argument("dirs", nargs="+", type=Path)
    return ap


class UsageError(ValueError):
    """Something on the command line is wrong (exit status 2)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA device is available (use --device cpu)")
    return device


@dataclass
class Given:
    """The conditions on the command line: parsed ones by name or input, and --cond values whose
    name is a modality's (parsed once the model says its kind); `shown` as typed, for settings."""

    raws: dict[str, Any] = field(default_factory=dict)
    later: dict[str, str] = field(default_factory=dict)
    shown: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [*self.raws, *self.later]


def _conditions(args: argparse.Namespace) -> Given:
    """Read and validate the conditions up front (before loading gigabytes): the flags, and every
    --cond whose name is an input a kind reads (text, mask, ...)."""
    inputs, given = kinds.inputs(), Given()
    items = [(name, getattr(args, name), f"--{name}") for name in inputs if getattr(args, name, None) is not None]
    for item in getattr(args, "cond", None) or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"--cond takes NAME=VALUE, got {item!r}")
        items.append((name, value, f"--cond {name}"))
    for name, value, flag in items:
        if name in given.shown:
            raise UsageError(f"{flag}: the {name} condition is given twice")
        given.shown[name] = str(value)
        if name in inputs:
            given.raws[name] = inputs[name].parse(str(value), flag)
        else:
            given.later[name] = str(value)
    return given


def _match(model, given: Given) -> dict[str, Any]:
    """The run's conditions, matched to the loaded model's modalities (`collab.matching`)."""
    from collab.matching import match_conditions

    raws = dict(given.raws)
    for name, value in given.later.items():
        if name not in model.names:
            raise UsageError(f"--cond {name}: this model has no {name} modality (it has {', '.join(model.names)})")
        encoder = model.config.modality(name).encoder
        raws[name] = kinds.kind_of(encoder).parse(value, f"--cond {name}")
    match = match_conditions(model.config, raws, {name: f"--{name}" for name in kinds.inputs()})
    if match.unread:
        raise UsageError(f"this model has no {', '.join(match.unread)} modality (it has {', '.join(model.names)})")
    for name, raw in match.conditions.items():  # its adapter reads it now: a bad value fails before sampling
        model.prepare(name, [raw])
    return match.conditions


def _handles(args: argparse.Namespace, conds: list[str]) -> tuple[dict[str, Any], dict[str, tuple[float, float]]]:
    """--strength NAME=S and --window NAME=START:END, checked before a model is loaded (whether the
    windows cover every step is checked by `generate`, which knows the schedule)."""
    from collab.combination import strength_value, window_value

    def split(flag: str, item: str) -> tuple[str, str]:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"{flag} takes NAME=VALUE, got {item!r}")
        if name not in conds:
            raise UsageError(f"{flag} {item}: {name!r} is not a condition of this run "
                             f"(given: {', '.join(conds)})")
        return name, value

    strength: dict[str, Any] = {}
    for item in getattr(args, "strength", None) or []:
        name, value = split("--strength", item)
        if value.endswith(".npy"):
            from collab.masks import MAX_MASK_PIXELS, npy_header

            path = validate.file_path("--strength", value, "strength map")
            shape, dtype = npy_header(path)  # a huge or unusable claimed array is refused before allocation
            if dtype.kind not in "biuf" or len(shape) != 2 or shape[0] * shape[1] > MAX_MASK_PIXELS:
                raise UsageError(f"--strength {item}: a strength map is a 2-D array of numbers [H, W] of at most "
                                 f"{MAX_MASK_PIXELS:,} values, got shape {shape}, dtype {dtype}")
            strength[name] = np.load(path, allow_pickle=False)
        else:
            try:
                strength[name] = float(value)
            except ValueError:
                raise UsageError(f"--strength {item}: {value!r} is not a number or a .npy map") from None
        try:
            strength_value(name, strength[name])
        except ValueError as e:
            raise UsageError(f"--strength: {e}") from None
    window: dict[str, tuple[float, float]] = {}
    for item in getattr(args, "window", None) or []:
        name, value = split("--window", item)
        try:
            start, end = (float(v) for v in value.split(":"))
        except ValueError:
            raise UsageError(f"--window {item}: give START:END as run fractions, e.g. {name}=0:0.6") from None
        try:
            window[name] = window_value(name, (start, end))
        except ValueError as e:
            raise UsageError(f"--window: {e}") from None
    return strength, window


def _check_common(args: argparse.Namespace) -> None:
    """Numbers, files and the output folder, before anything is loaded."""
    validate.integer("--steps", args.steps, 1, 1000)
    validate.real("--eta", args.eta, 0.0, 1.0)
    validate.seed_value("--seed", args.seed)
    validate.integer("--batch-size", args.batch_size, 1, validate.MAX_BATCH_SIZE)
    for path in args.ckpt or ():
        validate.file_path("--ckpt", path, "checkpoint file")
    existing = next((p for p in (args.out, *args.out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UsageError(f"--out {args.out}: {existing} is an existing file; give a folder (created if missing)")


def _check_targets(out: Path, names: list[str]) -> None:
    """Existing files of these names are replaced; anything else of that name is an error."""
    for name in names:
        if (out / name).exists() and not (out / name).is_file():
            raise UsageError(f"cannot write {out / name}: something that is not a file has that name")


Writer = Callable[[Path], None]


def _png(array: np.ndarray) -> Writer:
    return lambda path: Image.fromarray(array).save(path, format="PNG")


def write_all(out: Path, files: dict[str, Writer]) -> None:
    """Write every file under a temporary name, then rename them all; on any failure remove what
    was written (and the folders this call created), so nothing half-done stays behind."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    temps = {name: out / f".{name}.{os.getpid()}.tmp" for name in files}
    done: list[Path] = []
    try:
        for name, write in files.items():
            write(temps[name])
        for name, tmp in temps.items():
            tmp.replace(out / name)
            done.append(out / name)
    except BaseException:
        for path in (*temps.values(), *done):
            path.unlink(missing_ok=True)
        for folder in created:  # innermost first
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def run_generate(args: argparse.Namespace) -> int:
    from collab.pipeline import generate
    from collab.registry import load_model
    from collab.visualize import StepRecorder, grid, influence_grid

    given = _conditions(args)
    if not given.shown:
        raise UsageError(f"give a condition: --cond NAME=VALUE or {', '.join(f'--{n}' for n in kinds.inputs())}")
    _check_common(args)
    strength, window = _handles(args, given.names())
    stems = [f"{args.seed:06d}_{i:02d}" for i in range(args.batch_size)]
    _check_targets(args.out, [f"{s}{x}.png" for s in stems for x in ("", "_influence", "_x_t", "_pred_x0")]
                   + [f"{args.seed:06d}_settings.json"])
    device = resolve_device(args.device)
    model = load_model(args.model, ckpt=args.ckpt, config=args.config, vocab=args.vocab, trusted=args.trust_checkpoint,
                       device=device, dtype=DTYPES[args.dtype])
    conds = _match(model, given)
    recorders = [StepRecorder(sample=i, keep_latents=args.save_intermediates)
                 for i in range(args.batch_size)] if (args.save_influence or args.save_intermediates) else []
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=args.steps, desc="sampling", unit="step")

    def callback(step):
        for r in recorders:
            r(step)
        if bar is not None:
            bar.total = step.num_steps
            bar.update(1)

    mode = getattr(args, "mode", "collaborative")
    result = generate(model, conds, mode=mode, rule=getattr(args, "rule", None), sampler=args.sampler, steps=args.steps,
                      eta=args.eta, seed=args.seed, batch_size=args.batch_size,
                      callback=callback if (recorders or bar) else None, strength=strength, window=window)
    if bar is not None:
        bar.close()

    # Render everything, then write it all at once.
    files: dict[str, Writer] = {}
    for stem, image, rec in zip(stems, result.images, recorders or [None] * len(stems)):
        files[f"{stem}.png"] = _png(image)
        if rec is not None and args.save_influence and rec.influence:
            files[f"{stem}_influence.png"] = _png(influence_grid(rec))
        if rec is not None and args.save_intermediates:
            for key in ("x_t", "pred_x0"):
                lat = torch.stack(getattr(rec, key)).to(model.device)
                decoded = np.concatenate([_decode(model, lat[j:j + 8]) for j in range(0, len(lat), 8)])
                files[f"{stem}_{key}.png"] = _png(grid(list(decoded), ncols=10))
    settings = asdict(result.settings) | {"model": model.config.name, "conditions": given.shown}
    text = json.dumps(settings, indent=1)
    files[f"{args.seed:06d}_settings.json"] = lambda path: path.write_text(text)
    write_all(args.out, files)
    print(f"{result.settings.describe()}\nwrote {len(stems)} image(s) to {args.out}")
    return 0


def run_edit(args: argparse.Namespace) -> int:
    from collab.editing import EditSession, EditSettings, edit, prepare_image
    from collab.registry import load_model
    from collab.visualize import StepRecorder, grid, influence_grid

    # 1. validate everything before loading the model
    validate.file_path("--image", args.image, "image file")
    given = _conditions(args)
    if args.session is not None:
        validate.file_path("--session", args.session, "edit session file")
    elif not given.shown:
        raise UsageError("give a target: --text, --mask or --cond NAME=VALUE (or --session to reuse an edit)")
    for a in (args.alpha, *args.alphas):
        validate.real("--alpha / --alphas", a, 0.0, 3.0)
    _check_common(args)
    stem = args.image.stem
    names = {"edit": f"{stem}_edit_alpha{args.alpha:g}.png", "strip": f"{stem}_alpha_strip.png",
             "influence": f"{stem}_influence.png", "session": f"{stem}_edit_session.safetensors"}
    _check_targets(args.out, list(names.values()))
    device = resolve_device(args.device)
    model = load_model(args.model, ckpt=args.ckpt, config=args.config, vocab=args.vocab, trusted=args.trust_checkpoint,
                       device=device, dtype=DTYPES[args.dtype])

    # 2. stages 1-2 (or a saved session), with a progress bar
    if args.session is not None:
        session = EditSession.load(args.session)
    else:
        _, note = prepare_image(args.image, model.config.image_size)
        if note:
            print(f"input image: {note}")
        settings = EditSettings.preset(args.preset)
        settings = replace(settings, seed=args.seed)
        bar = None
        if not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(desc="editing", unit="it")

        def progress(stage: str, i: int, total: int, loss: float) -> None:
            if bar is not None:
                bar.set_description(stage)
                bar.total = total
                bar.n = i
                bar.set_postfix(loss=f"{loss:.4f}")
                bar.refresh()

        session = edit(model, args.image, _match(model, given), settings=settings, progress=progress)
        if bar is not None:
            bar.close()

    # 3. sample: the chosen alpha (with influence maps) and the strip
    rec = StepRecorder()
    common = dict(steps=args.steps, eta=args.eta, seed=args.seed, start=args.start)
    main_result = session.sample(model, args.alpha, callback=rec, **common)
    strip = [session.sample(model, a, **common).images[0] for a in args.alphas]

    # 4. write everything at the end
    files = {names["edit"]: _png(main_result.images[0]),
             names["strip"]: _png(grid([session.image, *strip], ncols=len(strip) + 1))}
    if rec.influence:
        files[names["influence"]] = _png(influence_grid(rec))
    if args.session is None:
        files[names["session"]] = session.save
    write_all(args.out, files)
    print(f"edited {', '.join(session.edits)}; wrote results to {args.out} (strip alphas: {args.alphas})")
    return 0


def _decode(model, latents: torch.Tensor) -> np.ndarray:
    from collab.pipeline import to_uint8

    return to_uint8(model.decode(latents))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse itself exits with 2 on a malformed command line
    if args.command == "check":
        from collab.reference_check import main as check_main

        return check_main([str(d) for d in args.dirs])
    warnings.simplefilter("default")
    try:
        if args.command == "edit":
            return run_edit(args)
        return run_generate(args)
    except KeyboardInterrupt:
        print("cancelled: nothing was written", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("COLLAB_DEBUG"):
            raise
        return report_error(e)


def report_error(e: Exception) -> int:
    """One line on stderr and the exit status: 2 for what the user gave (values, files, masks,
    conditions: the package raises ValueError, TypeError or FileNotFoundError for those), 1 for a
    failure of the work itself (a checkpoint that does not load, sampling, memory, writing)."""
    usage = isinstance(e, (ValueError, TypeError, FileNotFoundError))
    known = usage or isinstance(e, (RuntimeError, OSError, MemoryError))
    message = str(e).strip() or type(e).__name__
    print(f"error: {message if known else f'unexpected {type(e).__name__}: {message}'}", file=sys.stderr)
    return 2 if usage else 1


if __name__ == "__main__":
    sys.exit(main())
