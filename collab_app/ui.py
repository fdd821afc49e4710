"""The Gradio page: tabs wired to `collab_app.handlers`. No model logic here.

`build_app(state)` returns the Blocks; `launch_options()` the `launch()` arguments that belong to the
page (stylesheet, upload limit). Every model job shares one concurrency group sized to the number
of models, and holds its model's lock while it computes: one job per model at a time.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import io
import os
import threading
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from collab.classes import DISPLAY_NAMES, PALETTE

from collab_app import controls as C
from collab_app import handlers as h
from collab_app.state import AppState

MODEL_JOBS = "model"
MAX_FILE_SIZE = "20mb"
SAMPLERS = ["ddim", "dpmpp_2m"]
RULES = [("model default", ""), ("paper: learned softmax", "paper"),
         ("official: + cosine decay of the mask", "official")]
CLASS_PICKERS = ("gen-class", "edit-class")


def _class_css() -> str:
    """Colour chip before each class name of the class pickers."""
    rules = []
    for picker in CLASS_PICKERS:
        for i, rgb in enumerate(PALETTE, start=1):
            rules.append(f"#{picker} label:nth-of-type({i})::before {{content:''; display:inline-block; width:12px; "
                         f"height:12px; margin-right:4px; border:1px solid #777; background:rgb{rgb};}}")
    return "\n".join(rules)


CSS = _class_css() + """
#influence-frame img, .pixelated img { image-rendering: pixelated; }
#gen-gallery .grid-container { --grid-cols: 2 !important; }  /* one image must not fill the whole column */
"""


def launch_options() -> dict:
    return dict(css=CSS, max_file_size=MAX_FILE_SIZE, footer_links=["gradio"])


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


def _to_files(value: Any, folder: Path) -> Any:
    """Every image array inside an output (tuples, lists, editor dicts) -> its PNG file."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3:
        return _image_file(value, folder)
    if isinstance(value, (tuple, list)):
        return type(value)(_to_files(v, folder) for v in value)
    if isinstance(value, dict):
        return {k: _to_files(v, folder) for k, v in value.items()}
    return value


def _served(state: AppState, fn):
    """Outputs of `fn` (a function or a generator) with images as files."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            for out in fn(*args, **kwargs):
                yield _to_files(out, state.files_dir())
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        return _to_files(fn(*args, **kwargs), state.files_dir())
    return plain


def _gpu(fn, duration=60):
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


def _edit_seconds(model_name, face, text, mask, alpha, preset, *rest) -> int:
    """GPU time for an edit: per edited modality the faithful preset runs 1500 optimisation steps (fast:
    250), then five samplings; the official models' UNets are ~40x the demo's."""
    seconds = 60 if preset == "fast" else 180
    return seconds * 4 if str(model_name).startswith("official") else seconds


def _tool(state: AppState, fn):
    """A light handler: readable errors, images served as files."""
    return h.friendly(_served(state, fn))


def _job(state: AppState, fn, duration=60):
    """A model job: a light handler, under the ZeroGPU decorator where it applies."""
    return _gpu(_tool(state, fn), duration)


def _painter(label: str, elem_id: str) -> gr.ImageEditor:
    colours = h.brush_colours()
    return gr.ImageEditor(
        value=h.blank_mask(), label=label, type="numpy", image_mode="RGBA", format="png",
        sources=(), layers=False, transforms=(), elem_id=elem_id, height=400,
        brush=gr.Brush(colors=colours, default_color=colours[1], color_mode="fixed", default_size=6),
        eraser=gr.Eraser(default_size=8))


def _and_preview(fn):
    """A handler that sets the painter -> one that also shows the snapped preview."""
    @functools.wraps(fn)
    def both(*args, **kwargs):
        value = fn(*args, **kwargs)
        return value, (None if value is None else h.mask_preview(value))
    return both


def _mask_input(state: AppState, label: str, prefix: str) -> tuple[gr.ImageEditor, gr.Image]:
    """A mask painter with a class picker (brush colour and fill class), upload, examples, fill, clear."""
    painter = _painter(label, f"{prefix}-painter")
    cls = gr.Radio(list(DISPLAY_NAMES), value="skin", label="Class (brush colour and fill)",
                   elem_id=f"{prefix}-class")
    with gr.Accordion("Mask tools: upload, examples, fill, clear", open=False, elem_id=f"{prefix}-tools"):
        upload = gr.File(label="Upload a mask: palette PNG (label values), grey label PNG, colour PNG, .npy",
                         file_types=[".png", ".npy", ".bmp"], elem_id=f"{prefix}-mask-file")
        examples = h.example_files("masks")
        if examples:
            gr.Examples(examples=[[p] for p in examples], inputs=[upload], label="Example masks (face world)",
                        examples_per_page=len(examples))
        with gr.Row():
            preview = gr.Image(label="What the model reads — click to fill a region with the class", type="numpy",
                               interactive=False, height=220, format="png", elem_classes=["pixelated"],
                               buttons=[])
            with gr.Column():
                gr.HTML(h.palette_html())
                clear = gr.Button("Clear mask", size="sm")

    # the editor reports user strokes only: whatever sets its value also sets the preview
    upload.change(_tool(state, _and_preview(h.load_mask_file)), upload, [painter, preview], queue=False)
    painter.input(_tool(state, h.mask_preview), painter, preview, queue=False, show_progress="hidden")
    cls.change(lambda name: gr.ImageEditor(brush=gr.Brush(colors=h.brush_colours(), color_mode="fixed",
                                                          default_color=h.brush_colour(name), default_size=6)),
               cls, painter, queue=False, show_progress="hidden")

    def fill(value, name, evt: gr.SelectData):
        return h.fill_at(value, name, evt.index[0], evt.index[1])

    preview.select(_tool(state, _and_preview(fill)), [painter, cls], [painter, preview], queue=False)
    clear.click(_tool(state, _and_preview(h.blank_mask)), None, [painter, preview], queue=False)
    return painter, preview


def _attribute_input(names: tuple[str, ...], prefix: str, what: str) -> tuple[gr.Checkbox, gr.CheckboxGroup]:
    """An on/off box and the yes/no attributes: off sends no attribute condition, on with nothing
    ticked says that none of them holds. Hidden when no selectable model reads attributes."""
    with gr.Group(visible=bool(names)):
        use = gr.Checkbox(False, label=f"{what} attributes (models with an attribute modality)",
                          elem_id=f"{prefix}-use-attrs")
        ticked = gr.CheckboxGroup(list(names), value=[], label="Attributes that hold (unticked: absent)",
                                  elem_id=f"{prefix}-attrs")
    return use, ticked


def _attrs(use: bool, ticked: list[str] | None) -> list[str] | None:
    return list(ticked or []) if use else None


def _run_row(action: str, elem_id: str) -> tuple[gr.Slider, gr.Number, gr.Dropdown, gr.Button, gr.Button]:
    """Steps, seed, rule, the action button and Stop, for the tabs that reuse the Generate conditions."""
    with gr.Row():
        steps = gr.Slider(2, 100, 50, step=1, label="Steps")
        seed = gr.Number(0, label="Seed", precision=0, minimum=0)
        rule = gr.Dropdown(RULES, value="", label="Combination rule")
        with gr.Column():
            go = gr.Button(action, variant="primary", elem_id=elem_id)
            stop = gr.Button("Stop")
    return steps, seed, rule, go, stop


def build_app(state: AppState | None = None, **state_options) -> gr.Blocks:
    """The page over one `AppState` (made here from `state_options` when not given)."""
    state = state or AppState(**state_options)
    model_jobs = dict(concurrency_id=MODEL_JOBS, concurrency_limit=len(state.choices()))
    captions = h.example_captions()
    attribute_names = state.attribute_names()
    # every 10 minutes, files Gradio cached for the page more than an hour ago are deleted
    with gr.Blocks(title="collab — Collaborative Diffusion", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# Collaborative Diffusion\nMulti-modal face generation and editing: uni-modal models (text, "
                    "mask, attributes) joined per pixel and per step by learned influence functions.")
        with gr.Row():
            model_name = gr.Dropdown(state.choices(), value=state.default_model, label="Model", scale=2)
            with gr.Accordion("Models: available and missing", open=False):
                gr.Markdown(state.models_markdown())

        # ------------------------------------------------------------ Generate
        with gr.Tab("Generate", id="generate"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Text", value=captions[0], lines=2, max_length=h.MAX_TEXT_CHARS,
                                      elem_id="gen-text")
                    gr.Examples([[c] for c in captions], inputs=[text], label="Example prompts")
                    use_attrs, attrs = _attribute_input(attribute_names, "gen", "Condition on")
                    mask, _ = _mask_input(state, "Mask (paint with the 19-class palette; leave blank for text only)", "gen")
                    with gr.Accordion("Steer the mix: strength, steps, where a condition leads", open=False,
                                      elem_id="gen-controls"):
                        ctl = C.build(C.KINDS if attribute_names else C.KINDS[:2], mask, h.read_mask)
                with gr.Column():
                    with gr.Row():
                        seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                        steps = gr.Slider(1, h.MAX_STEPS, 50, step=1, label="Steps", elem_id="gen-steps")
                        eta = gr.Slider(0, 1, 1.0, step=0.05, label="eta (DDIM)")
                    with gr.Row():
                        sampler = gr.Dropdown(SAMPLERS, value="ddim", label="Sampler")
                        batch = gr.Slider(1, h.MAX_BATCH, 1, step=1, label="Batch size")
                        rule = gr.Dropdown(RULES, value="", label="Combination rule")
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                        stop = gr.Button("Stop", elem_id="generate-stop")
                    status = gr.Markdown(elem_id="gen-status")
                    gallery = gr.Gallery(label="Images (previews of the predicted x0 while sampling)", columns=2,
                                         height=340, elem_id="gen-gallery", format="png", object_fit="contain",
                                         elem_classes=["pixelated"])
                    over = gr.Image(label="Mask over the first image (alignment)", type="numpy", height=280,
                                    format="png", elem_id="gen-overlay", elem_classes=["pixelated"])

            def run_generate(model, text, mask, seed, steps, eta, sampler, batch, rule, use=False, ticked=None,
                             controls=None, progress=gr.Progress()):
                yield from h.generate_stream(state, model, text, mask, seed, steps, eta, sampler, batch, rule,
                                             progress=progress, attributes=_attrs(use, ticked), controls=controls)

            ev_gen = go.click(_job(state, C.taking_controls(run_generate, ctl)),
                              [model_name, text, mask, seed, steps, eta, sampler, batch, rule, use_attrs, attrs,
                               *ctl.components],
                              [gallery, over, status], api_name="generate", **model_jobs)
            stop.click(lambda: "stopped", None, status, cancels=[ev_gen], queue=False)

        # ------------------------------------------------------------ Edit
        with gr.Tab("Edit", id="edit"):
            with gr.Row():
                with gr.Column():
                    face = gr.Image(label="Face to edit", type="filepath", sources=["upload", "clipboard"],
                                    height=260, elem_id="edit-face")
                    faces = h.example_files("faces")
                    if faces:
                        gr.Examples([[p] for p in faces], inputs=[face], label="Example faces (face world)",
                                    examples_per_page=len(faces), elem_id="edit-examples")
                    e_text = gr.Textbox(label="Target text (leave empty to keep the text unchanged)", lines=2,
                                        placeholder="This man has a long beard. He is in his fifties.",
                                        elem_id="edit-text")
                    e_use_attrs, e_attrs = _attribute_input(attribute_names, "edit", "Target")
                    e_mask, e_preview = _mask_input(state, "Target mask (leave blank to keep the layout unchanged)", "edit")
                    if state.has_evaluator():
                        from_parser = gr.Button("Start the mask from the face parser's reading of the face",
                                                size="sm")
                        from_parser.click(_tool(state, _and_preview(lambda m, img: h.parse_to_mask(state, m, img))),
                                          [model_name, face], [e_mask, e_preview], **model_jobs)
                with gr.Column():
                    with gr.Row():
                        alpha = gr.Slider(0, 2.5, 1.0, step=0.05, label="alpha (weight of the target)")
                        preset = gr.Radio(["fast", "faithful"], value="fast", label="Preset",
                                          info="fast: 100 + 150 iterations, attention only (CPU); "
                                               "faithful: the official 500 + 1000")
                    with gr.Row():
                        e_seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                        e_steps = gr.Slider(2, h.MAX_STEPS, 50, step=1, label="Sampling steps", elem_id="edit-steps")
                    with gr.Row():
                        e_go = gr.Button("Edit", variant="primary", elem_id="edit-btn")
                        e_stop = gr.Button("Stop")
                    e_status = gr.Markdown(elem_id="edit-status")
                    e_out = gr.Image(label="Edited", type="numpy", height=300, format="png", elem_classes=["pixelated"])
                    e_strip = gr.Gallery(label="Alpha strip: the input, then alpha 0 / 0.5 / 1 / 1.5", columns=5,
                                         height=200, format="png", elem_id="edit-strip", elem_classes=["pixelated"])

            def run_edit(model, face, text, mask, alpha, preset, seed, steps, use=False, ticked=None,
                         progress=gr.Progress()):
                yield from h.edit_stream(state, model, face, text, mask, alpha, preset, seed, steps,
                                         progress=progress, attributes=_attrs(use, ticked))

            ev_edit = e_go.click(_job(state, run_edit, _edit_seconds),
                                 [model_name, face, e_text, e_mask, alpha, preset, e_seed, e_steps, e_use_attrs, e_attrs],
                                 [e_status, e_out, e_strip], api_name="edit", **model_jobs)
            e_stop.click(lambda: "stopped", None, e_status, cancels=[ev_edit], queue=False)

        # ------------------------------------------------------------ Influence functions
        with gr.Tab("Influence functions", id="influence"):
            gr.Markdown("Each modality's weight per pixel at every step (after the softmax and the rule; dark blue "
                        "0, yellow 1), beside "
                        "the noisy latent x_t and the predicted clean image. The paper's reading: *layout first, "
                        "details later* — the mask model leads early on contours, the text model later on "
                        "texture. Uses the conditions of the Generate tab (two or more of text, mask, attributes) and its "
                        "controls (strength, steps, painted region): the animation shows their effect.")
            i_steps, i_seed, i_rule, i_go, i_stop = _run_row("Generate and record", "influence-btn")
            i_status = gr.Markdown("Nothing recorded yet.", elem_id="influence-status")
            run_state = gr.State(None)
            i_frame = gr.Image(label="influence maps | x_t | predicted x0", type="filepath", height=240,
                               elem_id="influence-frame", interactive=False)
            i_slider = gr.Slider(1, 50, 1, step=1, label="Step", elem_id="influence-slider")
            with gr.Row():
                i_image = gr.Image(label="Result", type="numpy", height=260, format="png", elem_classes=["pixelated"])
                i_gif = gr.Image(label="Animation (GIF; download with the arrow)", type="filepath", height=260,
                                 elem_id="influence-gif")
            i_plot = gr.Plot(label="Mean influence per face region over time")

            def record(model, text, mask, seed, steps, rule, use=False, ticked=None, controls=None,
                       progress=gr.Progress()):
                for out in h.influence_stream(state, model, text, mask, seed, steps, rule, progress=progress,
                                              attributes=_attrs(use, ticked), controls=controls):
                    if isinstance(out, str):
                        yield (gr.skip(),) * 6 + (out,)
                        continue
                    run, image, fig = out
                    frame, where = h.influence_frame(run, 1)
                    yield (run, frame, gr.Slider(minimum=1, maximum=len(run.frames), value=1), image, run.gif,
                           fig, where)

            ev_inf = i_go.click(_job(state, C.taking_controls(record, ctl), 90),
                                [model_name, text, mask, i_seed, i_steps, i_rule, use_attrs, attrs, *ctl.components],
                                [run_state, i_frame, i_slider, i_image, i_gif, i_plot, i_status],
                                api_name="influence", **model_jobs)
            i_stop.click(lambda: "stopped", None, i_status, cancels=[ev_inf], queue=False)
            i_slider.change(h.friendly(h.influence_frame), [run_state, i_slider], [i_frame, i_status], queue=False,
                            show_progress="hidden")

        # ------------------------------------------------------------ Compare
        with gr.Tab("Compare", id="compare"):
            metrics = ("Under each image: the face parser's mask mIoU against your mask and what the attribute "
                       "classifier reads." if state.has_evaluator() else
                       "Install the evaluator (`checkpoints/evaluator`) to see mask mIoU and attribute readings.")
            joint = ("; with attributes and a mask, the jointly trained baseline (`joint`, one LDM trained on both "
                     "at once) is shown last" if h.JOINT_MODEL in state.choices() else "")
            gr.Markdown("The conditions of the Generate tab, one seed: each model alone, all with equal fixed "
                        f"weights (composable), and collaborative{joint}; when the Generate tab's controls "
                        "(strength, steps, painted region) are set, also collaborative steered by them. " + metrics)
            c_steps, c_seed, c_rule, c_go, c_stop = _run_row("Compare", "compare-btn")
            c_gallery = gr.Gallery(label="each alone | composable | collaborative", columns=4, height=340,
                                   format="png", elem_id="compare-gallery", object_fit="contain",
                                   elem_classes=["pixelated"])

            def run_compare(model, text, mask, seed, steps, rule, use=False, ticked=None, controls=None,
                            progress=gr.Progress()):
                yield from h.compare_stream(state, model, text, mask, seed, steps, rule, progress=progress,
                                            attributes=_attrs(use, ticked), controls=controls)

            ev_cmp = c_go.click(_job(state, C.taking_controls(run_compare, ctl), 120),
                                [model_name, text, mask, c_seed, c_steps, c_rule, use_attrs, attrs, *ctl.components],
                                c_gallery,
                                api_name="compare", **model_jobs)
            c_stop.click(None, None, None, cancels=[ev_cmp], queue=False)

        # ------------------------------------------------------------ About
        with gr.Tab("About", id="about"):
            about = gr.Markdown(h.about_markdown(state))
            refresh = gr.Button("Refresh", size="sm")
            refresh.click(lambda m: h.about_markdown(state, m), model_name, about, queue=False)
            model_name.change(lambda m: h.about_markdown(state, m), model_name, about, queue=False)
    return demo
