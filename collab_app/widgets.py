"""Widgets and wiring the tabs share: the mask input, the attribute picker, the seed row, the result
settings box, examples that run, and how an event becomes a job (checked, queued, stoppable).

Every event is queued (a `gr.Error` from an unqueued event reaches the page as a bare "Error" badge,
not as its message). Light events (previews, fills, uploads, Stop) run at once, beside model jobs;
only the four jobs are public API endpoints.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import io
import os
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
import numpy as np
from PIL import Image

from collab.classes import DISPLAY_NAMES, PALETTE

from collab_app import inputs as ui_in
from collab_app.errors import WARNINGS, friendly, to_page
from collab_app.handlers import KEEP
from collab_app.limits import STEPS, Bound
from collab_app.state import AppState

MODEL_JOBS = "model"
LIGHT = dict(concurrency_limit=None, api_visibility="private", show_progress="hidden")
RULES = [("model default", ""), ("paper: learned softmax", "paper"),
         ("official: + cosine decay of the mask", "official")]


# ---------------------------------------------------------------- images out as files


def _image_file(image: np.ndarray, folder: Path) -> str:
    """A PNG named by its content, written once (atomically) and never rewritten.

    Gradio writes arrays into its cache by content hash and rewrites the file each time the same
    image is sent again, which can race with the browser still fetching it; files it only copies."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="png")
    data = buffer.getvalue()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:40]}.png"
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    else:
        path.touch()  # in use again: not an old file for the app's clean-up (AppState.files_dir)
    return str(path)


def as_files(value: Any, folder: Path) -> Any:
    """Every image array inside an output value (galleries of (image, caption), editor dicts) -> its PNG."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3:
        return _image_file(value, folder)
    if isinstance(value, (tuple, list)):
        return type(value)(as_files(v, folder) for v in value)
    if isinstance(value, dict):
        return {k: as_files(v, folder) for k, v in value.items()}
    return value


def light(state: AppState, fn: Callable) -> Callable:
    """A light handler: readable errors and warnings as toasts, images served as files."""
    @functools.wraps(fn)  # gradio reads the signature (e.g. a gr.SelectData parameter)
    def served(*args, **kwargs):
        return as_files(fn(*args, **kwargs), state.files_dir())
    return friendly(served)


def check(fn: Callable) -> Callable:
    """A job's validation step: its errors become toasts; its warnings (corrected values) are left
    for the job itself to say, once."""
    def checked(*args):
        try:
            with WARNINGS.collect([]):  # a throwaway sink
                fn(*args)
        except Exception as e:
            raise to_page(e) from e
    return checked


def views(state: AppState, key: tuple, stream: Callable[[threading.Event], Iterator], order: tuple[str, ...],
          widgets: dict[str, Callable] | None = None):
    """Run a job's stream under a Stop flag found by `key`; yield each view's fields in `order`:
    KEEP as "unchanged", images as files, and a field named in `widgets` through its converter
    (a value -> a widget update)."""
    widgets = widgets or {}
    with state.stops.job(key) as flag:
        for view in stream(flag):
            values = ((name, getattr(view, name)) for name in order)
            yield tuple(gr.skip() if v is KEEP else widgets.get(name, lambda x: as_files(x, state.files_dir()))(v)
                        for name, v in values)


def field_names(view_class) -> tuple[str, ...]:
    return tuple(f.name for f in fields(view_class))


def session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


def gpu(fn: Callable, duration: int | Callable = 60) -> Callable:
    """`spaces.GPU(duration=...)` on a Hugging Face ZeroGPU Space; the function itself everywhere else.
    `duration`: the seconds of GPU a call asks for (or a function of the call's inputs); a shorter
    request is served sooner, a call that runs past it is stopped."""
    try:
        import spaces
        import torch

        if torch.cuda.is_available():
            return spaces.GPU(duration=duration)(fn)
    except ImportError:
        pass
    return fn


@dataclass
class Job:
    """A model job's controls and events: the action and Stop buttons, and the event a click runs."""

    button: gr.Button
    stop: gr.Button
    run: Any = None


def wire_job(state: AppState, job: Job, tab: str, validate: Callable, run: Callable, inputs: list, outputs: list,
             api_name: str, progress_on: list, examples: gr.Examples | None = None,
             gpu_seconds: int | Callable = 60) -> None:
    """Click -> check (a light event: a mistake is a toast, the outputs keep no error mark) -> the
    job (the public endpoint `api_name`, in the model group); an example click runs the same way.
    Stop sets the job's flag: the job ends at its next step and says so, so the next click runs.
    `gpu_seconds`: the GPU time a job asks for on a ZeroGPU Space (see `gpu`)."""
    jobs = dict(concurrency_id=MODEL_JOBS, concurrency_limit=len(state.choices()), show_progress_on=progress_on)
    runner = gpu(friendly(run), gpu_seconds)

    def validated(*args):  # the widgets' values, then the request (see the signature below)
        check(validate)(*args[:-1])
        state.stops.clicked((session(args[-1]), tab))

    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request)
    validated.__signature__ = inspect.signature(validate).replace(
        parameters=[*inspect.signature(validate).parameters.values(), request])
    validated.__annotations__ = {"request": gr.Request}  # gradio passes the request where it sees this

    job.run = job.button.click(validated, inputs, None, **LIGHT).success(runner, inputs, outputs, api_name=api_name,
                                                                         **jobs)
    if examples is not None:
        examples.load_input_event.then(validated, inputs, None, **LIGHT).success(
            runner, inputs, outputs, api_visibility="private", **jobs)

    def stop(request: gr.Request):
        if not state.stops.stop((session(request), tab)):
            gr.Info("nothing is running on this tab")

    job.stop.click(stop, None, None, **LIGHT)


def job_buttons(action: str, elem_id: str) -> Job:
    with gr.Row():
        go = gr.Button(action, variant="primary", elem_id=f"{elem_id}-btn")
        stop = gr.Button("Stop", elem_id=f"{elem_id}-stop")
    return Job(go, stop)


# ---------------------------------------------------------------- shared inputs


def slider(bound: Bound, label: str, elem_id: str | None = None, **kwargs) -> gr.Slider:
    return gr.Slider(bound.low, bound.high, bound.default, step=bound.step, label=label, elem_id=elem_id, **kwargs)


def seed_row(prefix: str, render: bool = True) -> tuple[gr.Number, gr.Checkbox]:
    """The seed and "randomize": the seed a job used comes back into the box."""
    seed = gr.Number(0, label="Seed", precision=0, elem_id=f"{prefix}-seed", info="the seed used comes back here",
                     render=render)
    randomize = gr.Checkbox(False, label="Randomize seed", elem_id=f"{prefix}-randomize", render=render)
    return seed, randomize


def steps_slider(prefix: str, label: str = "Steps", bound: Bound = STEPS) -> gr.Slider:
    return slider(bound, label, f"{prefix}-steps")


def settings_box(prefix: str) -> gr.Code:
    return gr.Code(None, language="json", label="Settings of this result (JSON: copy to reproduce it)",
                   interactive=False, lines=4, max_lines=14, elem_id=f"{prefix}-settings")


def attribute_input(names: tuple[str, ...], prefix: str, what: str) -> tuple[gr.Checkbox, gr.CheckboxGroup]:
    """An on/off box and the yes/no attributes: off sends no attribute condition, on with nothing
    ticked says that none of them holds. Hidden when no selectable model reads attributes."""
    with gr.Group(visible=bool(names)):
        use = gr.Checkbox(False, label=f"{what} attributes (models with an attribute modality)",
                          elem_id=f"{prefix}-use-attrs")
        ticked = gr.CheckboxGroup(list(names), value=[], label="Attributes that hold (unticked: absent)",
                                  elem_id=f"{prefix}-attrs")
    return use, ticked


def attrs(use: bool, ticked: list[str] | None) -> list[str] | None:
    return list(ticked or []) if use else None


def palette_html() -> str:
    chips = "".join(
        f'<span style="display:inline-block;margin:2px 8px 2px 0;white-space:nowrap">'
        f'<span style="display:inline-block;width:12px;height:12px;background:rgb{rgb};border:1px solid #888;'
        f'vertical-align:middle"></span> {i} {name}</span>'
        for i, (name, rgb) in enumerate(zip(DISPLAY_NAMES, PALETTE)))
    return f'<div style="font-size:12px;line-height:1.6">{chips}</div>'


def painter(label: str, prefix: str) -> gr.ImageEditor:
    """The mask painter, not yet placed (examples above it refer to it): `mask_input` renders it."""
    colours = ui_in.brush_colours()
    return gr.ImageEditor(
        value=ui_in.blank_mask(), label=label, type="numpy", image_mode="RGBA", format="png",
        sources=(), layers=False, transforms=(), elem_id=f"{prefix}-painter", height=400, render=False,
        brush=gr.Brush(colors=colours, default_color=colours[1], color_mode="fixed", default_size=6),
        eraser=gr.Eraser(default_size=8))


def mask_input(state: AppState, painter: gr.ImageEditor, prefix: str) -> gr.Image:
    """Place the painter with a class picker (brush colour and fill class), upload, example masks
    as thumbnails, the snapped preview (click to fill a region) and clear. Returns the preview, for
    `follow_painter`."""
    painter.render()
    cls = gr.Radio(list(DISPLAY_NAMES), value="skin", label="Class (brush colour and fill)", elem_id=f"{prefix}-class")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=200):
            preview = gr.Image(label="What the model reads: click to fill a region with the class", type="numpy",
                               interactive=False, format="png", elem_id=f"{prefix}-preview",
                               elem_classes=["pixelated", "mask-preview"], buttons=[])
        with gr.Column(scale=1, min_width=200):
            upload = gr.UploadButton("Upload a mask (palette / grey label / colour PNG, .npy)", size="sm",
                                     file_types=[".png", ".npy", ".bmp"], elem_id=f"{prefix}-upload")
            clear = gr.Button("Clear mask", size="sm", elem_id=f"{prefix}-clear")
            gr.HTML(palette_html())
    set_by_server = []
    if ui_in.example_files("masks"):
        examples = gr.Examples([[p] for p in ui_in.example_files("masks")], inputs=[painter], label="Example masks",
                               examples_per_page=12, elem_id=f"{prefix}-mask-examples", api_visibility="private")
        set_by_server.append(examples.load_input_event)

    cls.change(lambda name: gr.ImageEditor(brush=gr.Brush(colors=ui_in.brush_colours(), color_mode="fixed",
                                                          default_color=ui_in.brush_colour(name), default_size=6)),
               cls, painter, **LIGHT)

    def fill(value, name, evt: gr.SelectData):
        return ui_in.fill_at(value, name, evt.index[0], evt.index[1])

    set_by_server += [upload.upload(light(state, ui_in.load_mask_file), upload, painter, **LIGHT),
                      preview.select(light(state, fill), [painter, cls], painter, **LIGHT),
                      clear.click(light(state, ui_in.blank_mask), None, painter, **LIGHT)]
    # the preview follows the painter: after the user's strokes and after whatever the server set
    painter.input(light(state, ui_in.mask_preview), painter, preview, trigger_mode="always_last", **LIGHT)
    for event in set_by_server:
        follow_painter(state, event, painter, preview)
    return preview


def follow_painter(state: AppState, event, painter: gr.ImageEditor, preview: gr.Image) -> None:
    """After `event` set the painter (an upload, a fill, an example), show what the model reads."""
    event.success(light(state, ui_in.mask_preview), painter, preview, **LIGHT)


@dataclass
class Conditions:
    """The Generate tab's conditions, which the Influence and Compare tabs use too."""

    text: gr.Textbox
    mask: gr.ImageEditor
    use_attrs: gr.Checkbox
    attrs: gr.CheckboxGroup
    preview: gr.Image
    controls: Any = None  # the "Steer the mix" widgets (collab_app.controls.Widgets)


def example_seeds(n: int) -> list[int]:
    return [7 * k + 1 for k in range(n)]


def example_rows() -> list[tuple[str, str, int]]:
    """(caption, its mask, a seed) per example: each caption was written for that mask's face."""
    masks, captions = ui_in.example_files("masks"), ui_in.example_captions()
    return list(zip(captions, masks, example_seeds(len(masks))))


def runnable_examples(rows: list, inputs: list, label: str, elem_id: str, visible_columns: list[int]) -> gr.Examples:
    """Examples that run their tab's job on click (`wire_job` chains the job after they fill the
    inputs); the randomize box is a hidden column set off, so the example's seed is the one used."""
    return gr.Examples([list(r) for r in rows], inputs=inputs, label=label, elem_id=elem_id,
                       examples_per_page=len(rows),
                       visible_columns=visible_columns, api_visibility="private")
