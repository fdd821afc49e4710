"""The app's event handlers: read the widgets, call the `collab` package, shape the outputs.

Handlers take and return plain values (numpy images, strings, lists), so tests call them directly.
User mistakes raise `UserError` with a message written for the page; `friendly` turns those (and
anything unexpected) into `gr.Error`, so nobody sees a stack trace.
"""
from __future__ import annotations

import functools
import inspect
import logging
import queue
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image

from collab.classes import CLASS_NAMES, DISPLAY_NAMES, PALETTE
from collab.conditions import ConditionError
from collab.editing import EditCancelled, EditSettings, edit, prepare_image
from collab.masks import MaskError, colorize, flood_fill, load_mask, overlay, painted_labels
from collab.model import CollaborativeModel
from collab.pipeline import CollabStep, generate, to_uint8
from collab.visualize import StepRecorder, heatmap, label, upscale

from collab_app.state import AppState

log = logging.getLogger("collab.app")

MAX_STEPS = 200
MAX_BATCH = 8
MAX_TEXT_CHARS = 1000
MAX_UPLOAD_PIXELS = 4096 * 4096
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


class UserError(ValueError):
    """Something the user can fix; the message is shown as is."""


class Cancelled(RuntimeError):
    pass


# ---------------------------------------------------------------- errors and warnings -> the page


def _gr():
    import gradio as gr

    return gr


def _to_page(e: BaseException) -> Exception:
    gr = _gr()
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, (UserError, MaskError, ConditionError, EditCancelled)):
        return gr.Error(str(e))
    if isinstance(e, (ValueError, FileNotFoundError)):
        return gr.Error(str(e))
    log.exception("unexpected error in a handler")
    return gr.Error(f"Something went wrong ({type(e).__name__}: {e}). The server log has the details.")


def _flush_warnings(caught: list) -> None:
    gr = _gr()
    for w in caught:
        gr.Warning(str(w.message))


def friendly(fn: Callable) -> Callable:
    """Turn exceptions into readable gr.Error and Python warnings into gr.Warning toasts;
    works for plain functions and generators (streaming handlers)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    yield from fn(*args, **kwargs)
                except GeneratorExit:
                    raise
                except Exception as e:
                    raise _to_page(e) from e
                finally:
                    _flush_warnings(caught)
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                raise _to_page(e) from e
            finally:
                _flush_warnings(caught)
    return plain


# ---------------------------------------------------------------- reading the widgets


def read_text(text: str | None) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(f"the text is {len(text)} characters long; keep it under {MAX_TEXT_CHARS} "
                        "(the text encoder reads at most 77 tokens anyway)")
    return text


def read_mask(value: Any) -> np.ndarray | None:
    """The mask painter's value (dict with `composite`, or an image / path) -> labels, or None when
    nothing was painted. Painted pixels snap to the nearest palette class (strokes are anti-aliased)."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("composite")
        if value is None:
            return None
    if isinstance(value, (str, Path)):
        return load_mask(value)
    array = np.asarray(value)
    if array.ndim == 3 and array.shape[2] == 4 and not array[..., 3].any():
        return None  # an untouched, fully transparent canvas
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        return load_mask(array)
    if array.shape[0] * array.shape[1] > MAX_UPLOAD_PIXELS:
        raise UserError(f"the mask is {array.shape[1]}x{array.shape[0]}; at most {MAX_UPLOAD_PIXELS:,} pixels")
    labels = painted_labels(array)
    if not labels.any():
        warnings.warn("the mask is all background; paint a face (skin, hair, eyes...) for a useful layout")
    return labels


def load_mask_file(path: str | None) -> dict | None:
    """An uploaded mask file (palette PNG with label values, grey label PNG, colour PNG, .npy) ->
    the painter's value, shown in the official colours. Unknown colours are refused, named."""
    if not path:
        return None
    labels = load_mask(path)
    rgb = colorize(labels)
    return {"background": rgb, "layers": [], "composite": rgb}


def fill_at(value: Any, class_name: str, x: int, y: int) -> dict:
    """The paint bucket: fill the region under (x, y) of the current mask with a class."""
    labels = read_mask(value)
    if labels is None:
        labels = np.zeros((128, 128), np.uint8)
    if class_name not in DISPLAY_NAMES:
        raise UserError(f"unknown class {class_name!r}")
    labels = flood_fill(labels, int(y), int(x), DISPLAY_NAMES.index(class_name))
    rgb = colorize(labels)
    return {"background": rgb, "layers": [], "composite": rgb}


def blank_mask(size: int = 128) -> dict:
    rgb = colorize(np.zeros((size, size), np.uint8))
    return {"background": rgb, "layers": [], "composite": rgb}


def conditions_from(model: CollaborativeModel, text: str | None, mask: np.ndarray | None) -> dict:
    """The raw conditions for the model's modalities, by kind (text, mask)."""
    conds = {}
    for m in model.config.modalities:
        if m.kind == "text" and text is not None:
            conds[m.name] = text
        elif m.kind == "mask" and mask is not None:
            conds[m.name] = mask
    if not conds:
        kinds = " and/or ".join(sorted({m.kind for m in model.config.modalities}))
        raise UserError(f"give a {kinds} condition: write a description or paint / upload a mask")
    return conds


def check_numbers(steps: int, batch: int = 1, eta: float = 0.0) -> tuple[int, int, float]:
    steps, batch = int(steps), int(batch)
    if not 1 <= steps <= MAX_STEPS:
        raise UserError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    if not 1 <= batch <= MAX_BATCH:
        raise UserError(f"batch size must be between 1 and {MAX_BATCH}, got {batch}")
    if not 0.0 <= float(eta) <= 1.0:
        raise UserError(f"eta must be between 0 and 1, got {eta}")
    return steps, batch, float(eta)


def read_seed(seed: Any) -> int:
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise UserError(f"the seed must be a whole number, got {seed!r}") from None
    if not 0 <= seed < 2**63:
        raise UserError("the seed must be between 0 and 2^63 - 1")
    return seed


# ---------------------------------------------------------------- streaming from a worker thread


@dataclass
class _Stream:
    """Runs `work(report, cancelled)` in a thread; the generator yields what it reports."""

    work: Callable[[Callable[[Any], None], Callable[[], bool]], Any]
    items: queue.Queue = field(default_factory=queue.Queue)
    stop: threading.Event = field(default_factory=threading.Event)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        done = object()

        def run():
            try:
                self.items.put(("result", self.work(lambda x: self.items.put(("update", x)), self.stop.is_set)))
            except BaseException as e:  # handed to the generator, raised there
                self.items.put(("error", e))
            finally:
                self.items.put(("end", done))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            while True:
                kind, payload = self.items.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise payload
                yield kind, payload
        finally:
            self.stop.set()  # a closed generator (Stop button, closed tab) stops the worker
            thread.join(timeout=60)


def for_display(image: np.ndarray, min_size: int = 256) -> np.ndarray:
    """Nearest-neighbour upscale by a whole factor so small images are not shown as thumbnails."""
    k = max(1, -(-min_size // image.shape[0]))
    return image if k == 1 else np.repeat(np.repeat(image, k, axis=0), k, axis=1)


# ---------------------------------------------------------------- Generate


def _preview_callback(model: CollaborativeModel, report, cancelled, every: int) -> Callable[[CollabStep], None]:
    def cb(step: CollabStep) -> None:
        if cancelled():
            raise Cancelled("stopped")
        last = step.index == step.num_steps - 1
        if every and (step.index % every == 0) and not last:
            report((step.index + 1, step.num_steps, to_uint8(model.decode(step.pred_x0))))
    return cb


def generate_stream(state: AppState, model_name: str, text: str, mask_value: Any, seed: Any, steps: int,
                    eta: float, sampler: str, batch: int, rule: str, preview_every: int = 10):
    """Yields (gallery, overlay, status) while sampling: previews of the predicted x0, then the result."""
    text, mask = read_text(text), read_mask(mask_value)
    steps, batch, eta = check_numbers(steps, batch, eta)
    seed = read_seed(seed)
    model = state.model(model_name)
    conds = conditions_from(model, text, mask)

    def work(report, cancelled):
        return generate(model, conds, steps=steps, eta=eta, sampler=sampler, seed=seed, batch_size=batch,
                        rule=rule or None, callback=_preview_callback(model, report, cancelled, preview_every))

    for kind, payload in _Stream(work):
        if kind == "update":
            i, n, images = payload
            yield list(images), None, f"step {i}/{n}: predicted x0"
        else:
            res = payload
            images = list(res.images)
            over = for_display(overlay(images[0], mask)) if mask is not None else None
            yield images, over, f"done: {res.settings.describe()}"


# ---------------------------------------------------------------- Influence functions


@dataclass
class InfluenceRun:
    frames: list[np.ndarray]
    timesteps: list[int]
    rule: str
    gif: str
    summary: str


def _frame(rec: StepRecorder, k: int, xt: np.ndarray, x0: np.ndarray, size: int) -> np.ndarray:
    cells = [upscale(heatmap(rec.influence_array(n)[k]), size) for n in rec.influence] + [xt, x0]
    names = [f"{n} weight" for n in rec.influence] + [f"x_t  t={rec.timesteps[k]}", "predicted x0"]
    cells = [label(for_display(c, 192), name) for c, name in zip(cells, names)]
    return np.concatenate(cells, axis=1)


def _all_modalities(state: AppState, model_name: str, text: str, mask_value: Any, seed: Any, steps: int,
                    what: str) -> tuple[CollaborativeModel, dict, np.ndarray, int, int]:
    """Validated inputs for views that need every modality: (model, conditions, mask, seed, steps)."""
    text, mask = read_text(text), read_mask(mask_value)
    steps, _, _ = check_numbers(steps)
    seed = read_seed(seed)
    model = state.model(model_name)
    conds = conditions_from(model, text, mask)
    if len(conds) < len(model.names):
        raise UserError(f"{what} needs every modality: give both a text and a mask")
    return model, conds, mask, seed, steps


def influence_run(state: AppState, model_name: str, text: str, mask_value: Any, seed: Any, steps: int,
                  rule: str, mode: str = "collaborative") -> tuple[InfluenceRun, np.ndarray, Any]:
    """One generation with every step recorded: frames (maps | x_t | x0), a GIF, a region plot."""
    model, conds, mask, seed, steps = _all_modalities(state, model_name, text, mask_value, seed, steps,
                                                      "the influence view")
    rec = StepRecorder(keep_latents=True)
    res = generate(model, conds, steps=steps, eta=1.0, seed=seed, rule=rule or None, mode=mode, callback=rec)
    size = model.config.image_size
    with torch.no_grad():
        xts = np.concatenate([to_uint8(model.decode(torch.stack(rec.x_t[i:i + 16])))
                              for i in range(0, len(rec.x_t), 16)])
        x0s = np.concatenate([to_uint8(model.decode(torch.stack(rec.pred_x0[i:i + 16])))
                              for i in range(0, len(rec.pred_x0), 16)])
    frames = [_frame(rec, k, xts[k], x0s[k], size) for k in range(len(rec.timesteps))]
    gif = Path(tempfile.mkdtemp(prefix="collab_influence_")) / "influence.gif"
    pil = [Image.fromarray(f) for f in frames]
    pil[0].save(gif, save_all=True, append_images=pil[1:] + [pil[-1]] * 5, duration=120, loop=0)
    figure = region_plot(rec, mask, res.settings.rule, mode)
    run = InfluenceRun(frames, list(rec.timesteps), res.settings.rule, str(gif),
                       f"{len(frames)} steps, rule **{res.settings.rule}** "
                       f"({'learned softmax only' if res.settings.rule == 'paper' else 'softmax + the official cosine decay and doubling of the mask weight'}), "
                       f"mode {mode}, seed {seed}")
    return run, for_display(res.images[0]), figure


def region_plot(rec: StepRecorder, labels: np.ndarray, rule: str, mode: str):
    """Mean weight of each modality per face region over sampling (matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from collab.influence import region_influence

    names = list(rec.influence)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        r = region_influence(rec.influence_array(name), labels, rec.timesteps)
        for j, region in enumerate(r.regions):
            if np.isfinite(r.mean[:, j]).all():
                dashed = region in ("boundaries", "interiors")
                ax.plot(r.timesteps, r.mean[:, j], "--" if dashed else "-", lw=2 if dashed else 1.2, label=region)
        ax.set_xlim(max(r.timesteps), min(r.timesteps))
        ax.set_ylim(0, 1)
        ax.set_xlabel("timestep t (sampling goes left to right)")
        ax.set_ylabel(f"mean weight of {name}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"influence per face region — rule: {rule}, mode: {mode}")
    fig.tight_layout()
    plt.close(fig)
    return fig


def influence_frame(run: InfluenceRun | None, index: int) -> tuple[np.ndarray | None, str]:
    if run is None:
        return None, "run a generation first"
    k = int(np.clip(int(index), 0, len(run.frames) - 1))
    return run.frames[k], f"step {k + 1}/{len(run.frames)}, t = {run.timesteps[k]}"


# ---------------------------------------------------------------- Compare


ATTRIBUTE_WORDS = {"gender": ("woman", "man"), "age": ("teen", "20s", "30s", "40s", "50s", "elderly"),
                   "beard": ("no beard", "stubble", "short beard", "medium beard", "long beard")}


def compare_run(state: AppState, model_name: str, text: str, mask_value: Any, seed: Any, steps: int,
                rule: str) -> list[tuple[np.ndarray, str]]:
    """Text only, mask only, composable and collaborative from one seed; captions carry the
    evaluator's mask mIoU and attribute reading when an evaluator is installed."""
    from collab.evaluator import confusion, miou

    model, conds, mask, seed, steps = _all_modalities(state, model_name, text, mask_value, seed, steps,
                                                      "the comparison")
    runs = [(f"{n} only", {n: c}, "collaborative") for n, c in conds.items()]
    runs += [("composable (equal weights)", conds, "composable"), ("collaborative", conds, "collaborative")]
    ev = state.get_evaluator()
    out = []
    for title, cs, mode in runs:
        img = generate(model, cs, mode=mode, steps=steps, eta=1.0, seed=seed, rule=rule or None).images[0]
        caption = title
        if ev is not None:
            target = np.asarray(Image.fromarray(mask).resize(img.shape[:2][::-1], Image.NEAREST))
            score = miou(confusion(ev.parse(img[None])[0], target))
            attrs = ev.attributes(img[None])
            words = ", ".join(ATTRIBUTE_WORDS[k][int(v[0])] for k, v in attrs.items() if k in ATTRIBUTE_WORDS)
            caption += f" | mask mIoU {score:.2f} | reads as: {words}"
        out.append((img, caption))
    return out


# ---------------------------------------------------------------- Edit


def check_face(state: AppState, image: np.ndarray) -> None:
    """Refuse images in which the evaluator's parser finds no face (when an evaluator is installed)."""
    ev = state.get_evaluator()
    if ev is None:
        return
    labels = ev.parse(image[None])[0]
    face = np.isin(labels, [1, 2, 4, 5, 10, 11, 12]).mean()  # skin, nose, eyes, mouth, lips
    if face < 0.04:
        raise UserError(f"no face found in this image (face parser: {face:.1%} of pixels are face); "
                        "upload a frontal face photo")


def parse_to_mask(state: AppState, model_name: str, image: Any) -> dict:
    """The parser's mask of an uploaded face, to start the mask editor from."""
    if image is None:
        raise UserError("upload a face first")
    ev = state.get_evaluator()
    if ev is None:
        raise UserError("no face parser is installed (checkpoints/evaluator); start from an example mask instead")
    pixels, _ = prepare_image(image, state.model(model_name).config.image_size, MAX_UPLOAD_PIXELS)
    rgb = colorize(ev.parse(pixels[None])[0])
    return {"background": rgb, "layers": [], "composite": rgb}


def edit_stream(state: AppState, model_name: str, image: Any, text: str, mask_value: Any, alpha: float,
                preset: str, seed: Any, steps: int = 50, strip: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)):
    """Yields (status, edited image, alpha strip) through the optimisation stages, then the result."""
    if image is None:
        raise UserError("upload a face image to edit")
    text, mask = read_text(text), read_mask(mask_value)
    if not 0.0 <= float(alpha) <= 3.0:
        raise UserError(f"alpha must be between 0 and 3, got {alpha}")
    seed = read_seed(seed)
    steps, _, _ = check_numbers(steps)
    model = state.model(model_name)
    targets = conditions_from(model, text, mask)
    pixels, note = prepare_image(image, model.config.image_size, MAX_UPLOAD_PIXELS)
    if note:
        warnings.warn(f"input image {note}")
    check_face(state, pixels)
    settings = EditSettings.official() if preset == "faithful" else EditSettings.fast()
    settings = EditSettings(**{**settings.__dict__, "seed": seed})

    def work(report, cancelled):
        def progress(stage, i, total, loss):
            if i % 10 == 0 or i == total - 1:
                report(f"{stage}: {i + 1}/{total} (loss {loss:.4f})")
        session = edit(model, pixels, targets, settings=settings, progress=progress, cancel=cancelled)
        report("sampling the edit")
        main = session.sample(model, float(alpha), steps=steps, seed=seed).images[0]
        report(("main", main))
        results = []
        for a in strip:
            if cancelled():
                raise EditCancelled("stopped")
            results.append((session.sample(model, a, steps=steps, seed=seed).images[0], f"alpha {a}"))
        return main, results

    main = None
    for kind, payload in _Stream(work):
        if kind == "update":
            if isinstance(payload, tuple):
                main = payload[1]
                yield "sampling the alpha strip", main, []
            else:
                yield payload, main, []
        else:
            main, results = payload
            yield f"done ({preset} preset, alpha {alpha})", main, [(pixels, "input")] + results


# ---------------------------------------------------------------- examples and the palette


def palette_html() -> str:
    chips = "".join(
        f'<span style="display:inline-block;margin:2px 6px 2px 0;white-space:nowrap">'
        f'<span style="display:inline-block;width:12px;height:12px;background:rgb{rgb};border:1px solid #888;'
        f'vertical-align:middle"></span> {name}</span>' for name, rgb in zip(DISPLAY_NAMES, PALETTE))
    return f'<div style="font-size:12px;line-height:1.6">{chips}</div>'


def brush_colours() -> list[str]:
    return ["#%02x%02x%02x" % rgb for rgb in PALETTE]


def example_files(kind: str) -> list[str]:
    d = EXAMPLES_DIR / kind
    return sorted(str(p) for p in d.glob("*.png")) if d.exists() else []


def example_captions() -> list[str]:
    f = EXAMPLES_DIR / "captions.txt"
    if f.exists():
        return [line.strip() for line in f.read_text().splitlines() if line.strip()]
    return ["This man has beard of medium length. He is in his thirties.", "She is in her twenties."]


def about_markdown(state: AppState, model_name: str | None = None) -> str:
    name = model_name or state.default_model
    loaded = state.models.get(name)
    what = (f"`{name}`: {loaded.config.image_size}x{loaded.config.image_size}, modalities "
            f"{', '.join(loaded.names)}, default rule `{loaded.config.default_rule}`" if loaded
            else f"`{name}` (loads on first use)")
    return f"""
**Collaborative Diffusion** (Huang, Chan, Jiang, Liu — CVPR 2023) joins pre-trained uni-modal diffusion
models — here text-to-face and mask-to-face — without retraining them. Small *dynamic diffusers*
predict, for every pixel and every denoising step, how much to trust each model; the noise
predictions are mixed with those weights (a per-pixel softmax). Editing (Algorithm 3) fine-tunes each
collaborator on your image, Imagic-style, then samples collaboratively.

- Model: {what}
- Device: `{state.device}`, torch {torch.__version__}, {torch.get_num_threads()} threads
- Evaluator (parser + attribute classifier): {'installed' if state.get_evaluator() is not None else 'not installed'}

**Responsible use.** Synthetic and edited faces can be used to impersonate people, deceive, or
fabricate evidence; the paper's authors caution against this and so do we. Do not edit images of
real people without their consent, and label generated images as synthetic. The embedded demo model
was trained only on procedurally rendered faces made by this project: it knows no real person.
"""
