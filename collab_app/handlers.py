"""The app's event handlers: read the widgets, call the `collab` package, shape the outputs.

Handlers take and return plain values (numpy images, strings, lists), so tests call them directly.
Long handlers are generators that run the work in a thread and yield what it reports (previews,
stage names); `progress` is any `progress(fraction or (done, total), desc=...)` callable, such as
`gr.Progress`. User mistakes raise `UserError` with a message written for the page; `friendly`
turns those (and anything unexpected) into `gr.Error`, so nobody sees a stack trace.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import queue
import tempfile
import threading
import warnings
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image

from collab.classes import DISPLAY_NAMES, PALETTE
from collab.conditions import ConditionError
from collab.data.faceworld import AGES, BEARDS
from collab.editing import EditCancelled, EditSettings, edit, prepare_image
from collab.masks import MaskError, colorize, flood_fill, load_mask, overlay, painted_labels
from collab.model import CollaborativeModel
from collab.pipeline import CollabStep, generate, to_uint8
from collab.visualize import StepRecorder, heatmap, label, upscale

from collab_app import controls as C
from collab_app.state import AppState

log = logging.getLogger("collab.app")

MAX_STEPS = 200
MAX_BATCH = 8
MAX_TEXT_CHARS = 1000
MAX_UPLOAD_PIXELS = 4096 * 4096
MAX_ALPHA = 3.0
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
Progress = Callable[..., Any]


class UserError(ValueError):
    """Something the user can fix; the message is shown as is."""


class Cancelled(RuntimeError):
    """The Stop button (or a closed page) ended a job."""


def _no_progress(*args, **kwargs) -> None:
    return None


# ---------------------------------------------------------------- errors and warnings -> the page


def _gr():
    import gradio as gr

    return gr


def _to_page(e: BaseException) -> Exception:
    gr = _gr()
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, (UserError, MaskError, ConditionError, EditCancelled, Cancelled, ValueError,
                      FileNotFoundError)):
        return gr.Error(str(e), print_exception=False)  # the user's to fix: no stack trace in the log either
    log.error("unexpected error in a handler", exc_info=e)
    return gr.Error(f"Something went wrong ({type(e).__name__}: {e}). The server log has the details.",
                    print_exception=False)


class _WarningRouter:
    """Python warnings raised for a request -> that request's page, with jobs overlapping.

    `warnings.catch_warnings` swaps process-wide state, so two overlapping jobs could lose or swap
    their warnings. Instead one `showwarning` hook is installed (the first time a handler runs) and
    each thread working for a request registers that request's queue; a warning goes to the queue of
    the thread that raised it, or to the log when no request owns the thread. UserWarnings are made
    "always", so a warning a second request triggers is shown again instead of being deduplicated
    process-wide."""

    def __init__(self) -> None:
        self._sinks: dict[int, deque] = {}
        self._lock = threading.Lock()
        self._hook: Callable | None = None

    def _install(self) -> None:
        """(Re)install the hook: a `catch_warnings` block elsewhere restores the previous one on exit."""
        with self._lock:
            if self._hook is not None and warnings.showwarning is self._hook:
                return
            previous = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                sink = self._sinks.get(threading.get_ident())
                if sink is None:
                    return previous(message, category, filename, lineno, file, line)
                sink.append(str(message))

            self._hook = warnings.showwarning = show
            warnings.filterwarnings("always", category=UserWarning)

    def current(self) -> deque | None:
        return self._sinks.get(threading.get_ident())

    @contextlib.contextmanager
    def collect(self, sink: deque | None):
        """Route this thread's warnings into `sink` (nothing changes when `sink` is None)."""
        if sink is None:
            yield
            return
        self._install()
        tid = threading.get_ident()
        before = self._sinks.get(tid)
        self._sinks[tid] = sink
        try:
            yield
        finally:
            if before is None:
                self._sinks.pop(tid, None)
            else:
                self._sinks[tid] = before


_WARNINGS = _WarningRouter()  # process-wide by nature: it wraps the warnings module's one hook


def _flush_warnings(sink: deque) -> None:
    gr = _gr()
    shown = set()
    while sink:
        message = sink.popleft()
        if message not in shown:  # each distinct warning once per flush
            shown.add(message)
            gr.Warning(message)


def friendly(fn: Callable) -> Callable:
    """Turn exceptions into readable gr.Error and Python warnings into gr.Warning toasts (shown as
    they happen); works for plain functions and generators (streaming handlers), whose steps may
    each run on another thread."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            sink: deque = deque()
            inner = fn(*args, **kwargs)
            try:
                while True:
                    with _WARNINGS.collect(sink):
                        try:
                            item = next(inner)
                        except StopIteration:
                            return
                    _flush_warnings(sink)
                    yield item
            except GeneratorExit:
                inner.close()  # Stop / a closed page: let the handler stop its worker
                raise
            except Exception as e:
                raise _to_page(e) from e
            finally:
                _flush_warnings(sink)
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        sink: deque = deque()
        try:
            with _WARNINGS.collect(sink):
                return fn(*args, **kwargs)
        except Exception as e:
            raise _to_page(e) from e
        finally:
            _flush_warnings(sink)
    return plain


# ---------------------------------------------------------------- reading the widgets


def read_text(text: str | None) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(f"the text is {len(text)} characters long; keep it under {MAX_TEXT_CHARS} "
                        "(text encoders read only the first 32 to 77 tokens anyway)")
    return text


def read_mask(value: Any) -> np.ndarray | None:
    """The mask painter's value (dict with `composite`, or an image / path) -> labels, or None when
    nothing was painted (a transparent or all-background canvas). Painted pixels snap to the nearest
    palette class (strokes are anti-aliased)."""
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
    if array.ndim >= 2 and array.shape[0] * array.shape[1] > MAX_UPLOAD_PIXELS:
        raise UserError(f"the mask is {array.shape[1]}x{array.shape[0]} pixels; at most {MAX_UPLOAD_PIXELS:,}")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        return load_mask(array)
    labels = painted_labels(array)
    return labels if labels.any() else None  # all background: a blank canvas, no layout to follow


def _painter_value(labels: np.ndarray) -> dict:
    rgb = colorize(labels)
    return {"background": rgb, "layers": [], "composite": rgb}


def load_mask_file(path: str | None) -> dict | None:
    """An uploaded mask file (palette PNG with label values, grey label PNG, colour PNG, .npy) ->
    the painter's value, shown in the official colours. Unknown colours are refused, named."""
    if not path:
        return None
    try:
        labels = load_mask(path)
    except MaskError as e:  # say "mask.png", not the upload's temporary path
        raise UserError(str(e).replace(str(path), Path(path).name)) from None
    return _painter_value(labels)


def fill_at(value: Any, class_name: str, x: int, y: int) -> dict:
    """The paint bucket: fill the region under (x, y) of the current mask with a class."""
    if class_name not in DISPLAY_NAMES:
        raise UserError(f"unknown class {class_name!r}; choose one of {', '.join(DISPLAY_NAMES)}")
    labels = read_mask(value)
    if labels is None:
        labels = np.zeros((128, 128), np.uint8)
    return _painter_value(flood_fill(labels, int(y), int(x), DISPLAY_NAMES.index(class_name)))


def blank_mask(size: int = 128) -> dict:
    return _painter_value(np.zeros((size, size), np.uint8))


def mask_preview(value: Any) -> np.ndarray | None:
    """The painter's picture snapped to the palette: what the model will read, and where fills click."""
    labels = read_mask(value)
    return None if labels is None else colorize(labels)


def read_attributes(ticked: Any) -> list[str] | None:
    """The attribute picker's value -> the names that hold ([] = none of them), or None when the
    page sends no attribute condition (its "condition on attributes" box is off)."""
    if ticked is None:
        return None
    if isinstance(ticked, str):
        ticked = [t for t in ticked.split(",") if t.strip()]
    return [str(t).strip() for t in ticked]


def _given_kind(kind: str) -> str:
    return "mask" if kind == "mask_grid" else kind  # both read the painted mask


def conditions_from(model: CollaborativeModel, text: str | None, mask: np.ndarray | None,
                    attributes: list[str] | None = None) -> dict:
    """The raw conditions for the model's modalities, matched by kind (text, mask, attributes; a
    joint modality when every one of its parts is given)."""
    given = {"text": text, "mask": mask, "attributes": None if attributes is None else ", ".join(attributes) or "none"}
    conds, used = {}, set()
    for m in model.config.modalities:
        raws = {name: given.get(_given_kind(kind)) for name, kind, _ in m.inputs()}
        if any(v is None for v in raws.values()):
            continue
        conds[m.name] = raws if m.kind == "joint" else raws[m.name]
        used |= {_given_kind(kind) for _, kind, _ in m.inputs()}
    unread = [k for k, v in given.items() if v is not None and k not in used]
    if conds and unread:  # said, not silently dropped
        warnings.warn(f"this model does not use the {' and the '.join(unread)} you gave "
                      f"(it reads {', '.join(conds)}); {'they were' if len(unread) > 1 else 'it was'} ignored")
    if not conds:
        wants = [" + ".join(name for name, _, _ in m.inputs()) for m in model.config.modalities]
        raise UserError(f"give a condition this model reads ({' or '.join(wants)}): write a description, "
                        "paint / upload a mask, or tick attributes")
    return conds


def check_numbers(steps: Any, batch: Any = 1, eta: Any = 0.0) -> tuple[int, int, float]:
    try:
        steps, batch, eta = int(steps), int(batch), float(eta)
    except (TypeError, ValueError):
        raise UserError(f"steps, batch size and eta must be numbers, got {steps!r}, {batch!r}, {eta!r}") from None
    if not 1 <= steps <= MAX_STEPS:
        raise UserError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    if not 1 <= batch <= MAX_BATCH:
        raise UserError(f"batch size must be between 1 and {MAX_BATCH}, got {batch}")
    if not 0.0 <= eta <= 1.0:
        raise UserError(f"eta must be between 0 and 1, got {eta}")
    return steps, batch, eta


def read_seed(seed: Any) -> int:
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise UserError(f"the seed must be a whole number, got {seed!r}") from None
    if not 0 <= seed < 2**63:
        raise UserError("the seed must be between 0 and 2^63 - 1")
    return seed


def read_face(image: Any, size: int) -> np.ndarray:
    """An uploaded face (path or array) -> RGB uint8 [size, size, 3]; huge or unreadable files refused."""
    if image is None:
        raise UserError("upload a face image to edit")
    try:
        pixels, note = prepare_image(image, size, MAX_UPLOAD_PIXELS)
    except ValueError as e:
        raise UserError(str(e).replace(str(image), Path(str(image)).name)) from None
    if note:
        warnings.warn(f"input image {note}")
    return np.array(pixels)  # writable (torch refuses read-only buffers)


# ---------------------------------------------------------------- streaming from a worker thread


@dataclass
class _Stream:
    """Runs `work(report, cancelled)` in a thread; iterating yields ("update", x) for each
    `report(x)`, then ("result", return value). The thread sees the caller's context variables, so
    `gr.Progress` and `gr.Warning` work from it; closing the iterator (Stop, a closed page) sets
    `cancelled()` and waits for the thread."""

    work: Callable[[Callable[[Any], None], Callable[[], bool]], Any]
    items: queue.Queue = field(default_factory=queue.Queue)
    stop: threading.Event = field(default_factory=threading.Event)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        sink = _WARNINGS.current()  # the worker's warnings belong to the same request

        def run():
            try:
                with _WARNINGS.collect(sink):
                    result = self.work(lambda x: self.items.put(("update", x)), self.stop.is_set)
                self.items.put(("result", result))
            except BaseException as e:  # handed to the generator, raised there
                self.items.put(("error", e))

        thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
        thread.start()
        try:
            while True:
                kind, payload = self.items.get()
                if kind == "error":
                    raise payload
                yield kind, payload
                if kind == "result":
                    return
        finally:
            self.stop.set()
            thread.join(timeout=60)


def _stopper(cancelled: Callable[[], bool]) -> None:
    if cancelled():
        raise Cancelled("stopped")


def for_display(image: np.ndarray, min_size: int = 256) -> np.ndarray:
    """Nearest-neighbour upscale by a whole factor so small images are not shown as thumbnails."""
    k = max(1, -(-min_size // image.shape[0]))
    return image if k == 1 else np.repeat(np.repeat(image, k, axis=0), k, axis=1)


# ---------------------------------------------------------------- Generate


def generate_stream(state: AppState, model_name: str, text: str, mask_value: Any, seed: Any, steps: Any,
                    eta: Any, sampler: str, batch: Any, rule: str, preview_every: int | None = None,
                    progress: Progress | None = None, attributes: Any = None, controls: C.Controls | None = None):
    """Yields (gallery, overlay, status) while sampling: previews of the predicted x0 every few
    steps, then the result (the same pixels as `collab.pipeline.generate` with that seed)."""
    text, mask, attrs = read_text(text), read_mask(mask_value), read_attributes(attributes)
    steps, batch, eta = check_numbers(steps, batch, eta)
    seed = read_seed(seed)
    model = state.model(model_name)
    conds = conditions_from(model, text, mask, attrs)
    handles = controls.handles(model, conds) if controls else {}
    every = preview_every or max(1, steps // 8)
    progress = progress or _no_progress

    def work(report, cancelled):
        def on_step(step: CollabStep) -> None:
            _stopper(cancelled)
            progress((step.index + 1, step.num_steps), desc="sampling")
            if step.index % every == 0 and step.index < step.num_steps - 1:
                report((step.index + 1, step.num_steps, to_uint8(model.decode(step.pred_x0))))

        with state.busy(model_name):
            return generate(model, conds, steps=steps, eta=eta, sampler=sampler, seed=seed, batch_size=batch,
                            rule=rule or None, callback=on_step, **handles)

    for kind, payload in _Stream(work):
        if kind == "update":
            i, n, images = payload
            yield list(images), None, f"step {i}/{n}: predicted x0 (preview)"
        else:
            images = list(payload.images)
            over = for_display(overlay(images[0], mask)) if mask is not None else None
            yield images, over, f"done: {payload.settings.describe()}"


# ---------------------------------------------------------------- Influence functions


@dataclass
class InfluenceRun:
    frames: list[np.ndarray]  # per step: influence maps | x_t | predicted x0
    timesteps: list[int]
    rule: str
    gif: str
    summary: str
    files: list[str] = field(default_factory=list)  # the frames as PNGs, written once, served as they are


RULE_NOTES = {"paper": "the learned per-pixel softmax, as in the paper",
              "official": "softmax, then the official sampler's cosine decay and doubling of the mask weight"}


def _frame(rec: StepRecorder, k: int, xt: np.ndarray, x0: np.ndarray, size: int) -> np.ndarray:
    cells = [upscale(heatmap(rec.influence_array(n)[k]), size) for n in rec.influence] + [xt, x0]
    names = [f"{n} weight" for n in rec.influence] + [f"x_t  t={rec.timesteps[k]}", "predicted x0"]
    cells = [label(for_display(c, 192), name) for c, name in zip(cells, names)]
    return np.concatenate(cells, axis=1)


def _decode_all(model: CollaborativeModel, latents: list[torch.Tensor], chunk: int = 16) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([to_uint8(model.decode(torch.stack(latents[i:i + chunk]).to(model.device)))
                               for i in range(0, len(latents), chunk)])


def _mixed_inputs(state: AppState, model_name: str, text: str, mask_value: Any, attributes: Any, seed: Any,
                  steps: Any, what: str) -> tuple[CollaborativeModel, dict, np.ndarray | None, int, int]:
    """Validated inputs for views that mix modalities: (model, conditions, mask, seed, steps)."""
    text, mask, attrs = read_text(text), read_mask(mask_value), read_attributes(attributes)
    steps, _, _ = check_numbers(steps)
    seed = read_seed(seed)
    model = state.model(model_name)
    if not model.diffusers:
        raise UserError(f"model {model_name or state.default_model} is one network with no dynamic diffusers; "
                        f"{what} needs a collaborative model (e.g. demo)")
    conds = conditions_from(model, text, mask, attrs)
    if len(conds) < 2:
        raise UserError(f"{what} needs at least two modalities: give two or more of {', '.join(model.names)} "
                        f"(got {', '.join(conds)} only)")
    return model, conds, mask, seed, steps


def influence_stream(state: AppState, model_name: str, text: str, mask_value: Any, seed: Any, steps: Any,
                     rule: str, mode: str = "collaborative", progress: Progress | None = None,
                     attributes: Any = None, controls: C.Controls | None = None):
    """One generation with every step recorded. Yields status strings while it works, then
    (InfluenceRun, result image, region plot): frames (maps | x_t | x0), a GIF, the plot (per face
    region when a mask was given)."""
    model, conds, mask, seed, steps = _mixed_inputs(state, model_name, text, mask_value, attributes, seed, steps,
                                                    "the influence view")
    handles = controls.handles(model, conds) if controls else {}
    progress = progress or _no_progress

    def work(report, cancelled):
        rec = StepRecorder(keep_latents=True)

        def on_step(step: CollabStep) -> None:
            _stopper(cancelled)
            rec(step)
            progress((step.index + 1, step.num_steps), desc="sampling, recording every step")

        with state.busy(model_name):
            res = generate(model, conds, steps=steps, eta=1.0, seed=seed, rule=rule or None, mode=mode,
                           callback=on_step, **handles)
            report("decoding x_t and the predicted x0 of every step")
            progress(None)
            xts, x0s = _decode_all(model, rec.x_t), _decode_all(model, rec.pred_x0)
        size = model.config.image_size
        frames = [_frame(rec, k, xts[k], x0s[k], size) for k in range(len(rec.timesteps))]
        report("writing the frames, the GIF and the region plot")
        folder = Path(tempfile.mkdtemp(prefix="influence_", dir=state.files_dir()))  # cleaned with it
        pil = [Image.fromarray(f) for f in frames]
        files = [str(folder / f"step_{k + 1:03d}.png") for k in range(len(pil))]
        for im, name in zip(pil, files):
            im.save(name)
        gif = folder / "influence.gif"
        pil[0].save(gif, save_all=True, append_images=pil[1:] + [pil[-1]] * 5, duration=120, loop=0)
        used = res.settings.rule
        figure = region_plot(rec, mask, used, mode)
        summary = f"{len(frames)} steps, rule **{used}** ({RULE_NOTES.get(used, used)}), mode {mode}, seed {seed}"
        summary += f"; handles: {C.describe(res.settings)}"
        run = InfluenceRun(frames, list(rec.timesteps), used, str(gif), summary, files)
        return run, for_display(res.images[0]), figure

    for kind, payload in _Stream(work):
        yield payload


def region_plot(rec: StepRecorder, labels: np.ndarray | None, rule: str, mode: str):
    """Mean weight of each modality per face region over sampling (matplotlib Figure); over the
    whole image when no mask was given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from collab.influence import region_influence

    names = list(rec.influence)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        maps = rec.influence_array(name)
        r = (region_influence(maps, labels, rec.timesteps) if labels is not None else
             region_influence(maps, np.zeros(maps.shape[-2:], np.uint8), rec.timesteps,
                              regions={"whole image": [0]}, with_boundary=False))
        for j, region in enumerate(r.regions):
            if np.isfinite(r.mean[:, j]).all():
                dashed = region in ("boundaries", "interiors")
                ax.plot(r.timesteps, r.mean[:, j], "--" if dashed else "-", lw=2 if dashed else 1.2, label=region)
        ax.set_xlim(max(r.timesteps), min(r.timesteps))
        ax.set_ylim(0, 1)
        ax.set_xlabel("timestep t (sampling runs left to right)")
        ax.set_ylabel(f"mean weight of {name}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    where = "per face region" if labels is not None else "over the whole image (no mask given)"
    fig.suptitle(f"influence {where} — rule: {rule}, mode: {mode}")
    fig.tight_layout()
    plt.close(fig)
    return fig


def influence_frame(run: InfluenceRun | None, step: Any) -> tuple[str | None, str]:
    """The frame of sampling step `step` (1-based, as on the slider) as a PNG file, and its caption."""
    if run is None:
        return None, "record a generation first"
    k = int(np.clip(int(step) - 1, 0, len(run.frames) - 1))
    return run.files[k], f"{run.summary} — step {k + 1}/{len(run.frames)}, t = {run.timesteps[k]}"


# ---------------------------------------------------------------- Compare


ATTRIBUTE_WORDS = {"gender": ("woman", "man"), "age": AGES, "beard": tuple(f"beard: {b}" for b in BEARDS)}
COMPARE_TITLES = {"composable": "composable (equal weights)", "collaborative": "collaborative"}


def _metrics_caption(ev, image: np.ndarray, mask: np.ndarray | None) -> str:
    from collab.evaluator import confusion, miou

    attrs = ev.attributes(image[None])
    words = ", ".join(ATTRIBUTE_WORDS[k][int(v[0])] for k, v in attrs.items() if k in ATTRIBUTE_WORDS)
    if mask is None:
        return f"reads as: {words}"
    target = np.asarray(Image.fromarray(mask).resize(image.shape[:2][::-1], Image.NEAREST))
    score = miou(confusion(ev.parse(image[None])[0], target))
    return f"mask mIoU {score:.2f} | reads as: {words}"


JOINT_MODEL = "joint"  # the registry's jointly trained baseline, shown in Compare when installed


def _joint_run(state: AppState, model_name: str, mask, attrs) -> tuple | None:
    """(title, model name, model, conditions, mode) of the jointly trained baseline when it is
    installed, is not the model being compared, and every condition it reads was given (decided
    from its config, so it is loaded only when it will run). It reads no text."""
    if JOINT_MODEL not in state.choices() or state.resolve(model_name) == JOINT_MODEL:
        return None
    given = {"mask": mask, "attributes": attrs}
    inputs = [i for m in state.config(JOINT_MODEL).modalities for i in m.inputs()]
    if any(given.get(_given_kind(kind)) is None for _, kind, _ in inputs):
        return None
    joint = state.model(JOINT_MODEL)
    conds = conditions_from(joint, None, mask, attrs)
    title = f"joint LDM ({' + '.join(name for name, _, _ in inputs)})"
    return title, JOINT_MODEL, joint, conds, "collaborative"


def compare_stream(state: AppState, model_name: str, text: str, mask_value: Any, seed: Any, steps: Any,
                   rule: str, progress: Progress | None = None, attributes: Any = None,
                   controls: C.Controls | None = None):
    """Each given modality alone, composable and collaborative from one seed (and the jointly
    trained baseline on its conditions when installed), yielding the gallery as it fills; captions
    carry the evaluator's mask mIoU and attribute reading when one is installed."""
    model, conds, mask, seed, steps = _mixed_inputs(state, model_name, text, mask_value, attributes, seed, steps,
                                                    "the comparison")
    name = state.resolve(model_name)
    runs = [(f"{n} only", name, model, {n: c}, "collaborative") for n, c in conds.items()]
    runs += [(COMPARE_TITLES[m], name, model, conds, m) for m in ("composable", "collaborative")]
    steered = {}  # title -> strength / window of the run that shows the controls' effect
    if controls is not None and not controls.is_default:
        runs.append(("collaborative, steered", name, model, conds, "collaborative"))
        steered["collaborative, steered"] = controls.handles(model, conds)
    joint = _joint_run(state, model_name, mask, read_attributes(attributes))
    if joint is not None:
        runs.append(joint)
    progress = progress or _no_progress
    ev = state.get_evaluator()

    def work(report, cancelled):
        out = []
        for k, (title, net_name, net, cs, mode) in enumerate(runs):
            progress((k, len(runs)), desc=title)
            with state.busy(net_name):
                res = generate(net, cs, mode=mode, steps=steps, eta=1.0, seed=seed,
                               rule=(rule or None) if net.diffusers else None,
                               callback=lambda step: _stopper(cancelled), **steered.get(title, {}))
            img = res.images[0]
            title = f"{title}: {C.describe(res.settings)}" if title in steered else title
            out.append((img, title if ev is None else f"{title} | {_metrics_caption(ev, img, mask)}"))
            report(list(out))
        return out

    for kind, payload in _Stream(work):
        if kind == "update":
            yield payload


# ---------------------------------------------------------------- Edit


def check_face(state: AppState, image: np.ndarray) -> None:
    """Refuse images in which the evaluator's parser finds no face (when an evaluator is installed)."""
    ev = state.get_evaluator()
    if ev is None:
        return
    labels = ev.parse(image[None])[0]
    face = np.isin(labels, [1, 2, 4, 5, 10, 11, 12]).mean()  # skin, nose, eyes, mouth, lips
    if face < 0.04:
        raise UserError(f"no face found in this image (the face parser sees {face:.1%} face pixels); "
                        "upload a frontal, centred face photo")


def parse_to_mask(state: AppState, model_name: str, image: Any) -> dict:
    """The parser's mask of an uploaded face, to start the mask editor from."""
    ev = state.get_evaluator()
    if ev is None:
        raise UserError("no face parser is installed (checkpoints/evaluator); start from an example mask instead")
    pixels = read_face(image, state.model(model_name).config.image_size)
    return _painter_value(ev.parse(pixels[None])[0])


def edit_settings(preset: str, seed: int) -> EditSettings:
    if preset not in ("fast", "faithful"):
        raise UserError(f"unknown preset {preset!r}; choose fast or faithful")
    settings = EditSettings.official() if preset == "faithful" else EditSettings.fast()
    return replace(settings, seed=seed)


def edit_stream(state: AppState, model_name: str, image: Any, text: str, mask_value: Any, alpha: Any,
                preset: str, seed: Any, steps: int = 50, strip: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5),
                progress: Progress | None = None, attributes: Any = None):
    """Yields (status, edited image, alpha strip) through the optimisation stages, then the result."""
    if image is None:
        raise UserError("upload a face image to edit")
    text, mask, attrs = read_text(text), read_mask(mask_value), read_attributes(attributes)
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise UserError(f"alpha must be a number, got {alpha!r}") from None
    if not 0.0 <= alpha <= MAX_ALPHA:
        raise UserError(f"alpha must be between 0 and {MAX_ALPHA}, got {alpha}")
    seed = read_seed(seed)
    steps, _, _ = check_numbers(steps)
    model = state.model(model_name)
    targets = conditions_from(model, text, mask, attrs)
    pixels = read_face(image, model.config.image_size)
    check_face(state, pixels)
    settings = edit_settings(preset, seed)
    progress = progress or _no_progress

    def work(report, cancelled):
        def on_iteration(stage: str, done: int, total: int, loss: float) -> None:
            progress((done, total), desc=stage)
            if done % 10 == 0 or done == total:
                report(f"{stage}: {done}/{total} (loss {loss:.4f})")

        with state.busy(model_name):
            session = edit(model, pixels, targets, settings=settings, progress=on_iteration, cancel=cancelled)
            report("sampling the edit")
            progress(None)
            main = for_display(session.sample(model, alpha, steps=steps, seed=seed,
                                              callback=lambda step: _stopper(cancelled)).images[0])
            report(("main", main))
            results = []
            for k, a in enumerate(strip):
                progress((k, len(strip)), desc="alpha strip")
                image = session.sample(model, a, steps=steps, seed=seed, callback=lambda step: _stopper(cancelled))
                results.append((image.images[0], f"alpha {a}"))
        return main, results

    main = None
    for kind, payload in _Stream(work):
        if kind == "update" and isinstance(payload, tuple):
            main = payload[1]
            yield "sampling the alpha strip", main, []
        elif kind == "update":
            yield payload, main, []
        else:
            main, results = payload
            yield f"done ({preset} preset, alpha {alpha:g}, seed {seed})", main, [(pixels, "input")] + results


# ---------------------------------------------------------------- examples, palette, about


def palette_html() -> str:
    chips = "".join(
        f'<span style="display:inline-block;margin:2px 8px 2px 0;white-space:nowrap">'
        f'<span style="display:inline-block;width:12px;height:12px;background:rgb{rgb};border:1px solid #888;'
        f'vertical-align:middle"></span> {i} {name}</span>' for i, (name, rgb) in enumerate(zip(DISPLAY_NAMES, PALETTE)))
    return f'<div style="font-size:12px;line-height:1.6">{chips}</div>'


def brush_colours() -> list[str]:
    return ["#%02x%02x%02x" % rgb for rgb in PALETTE]


def brush_colour(class_name: str) -> str:
    if class_name not in DISPLAY_NAMES:
        raise UserError(f"unknown class {class_name!r}; choose one of {', '.join(DISPLAY_NAMES)}")
    return brush_colours()[DISPLAY_NAMES.index(class_name)]


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
    evaluator = "installed" if state.has_evaluator() else "not installed (no metrics in Compare, no parser mask in Edit)"
    return f"""
**Collaborative Diffusion** (Huang, Chan, Jiang, Liu — CVPR 2023) joins pre-trained uni-modal diffusion
models — here text-to-face and mask-to-face — without retraining them. Small *dynamic diffusers*
predict, for every pixel and every denoising step, how much to trust each model; the noise
predictions are mixed with those weights (a per-pixel softmax). Editing (Algorithm 3) fine-tunes each
collaborator on your image, Imagic-style, then samples collaboratively.

- Model: {what}
- Device: `{state.device}`, torch {torch.__version__}, {torch.get_num_threads()} threads
- Evaluator (face parser + attribute classifier): {evaluator}

**Responsible use.** Synthetic and edited faces can be misused to impersonate people, deceive, or
fabricate evidence; the paper's authors caution against such use in their discussion of societal
impact, and so do we. Do not edit images of real people without their consent, and label generated
images as synthetic. The embedded demo model was trained only on procedurally rendered faces made by
this project: it has never seen a photograph and knows no real person.
"""
