"""Edit: a face and target conditions -> the edited face and an alpha strip (the paper's Algorithm 3)."""
from __future__ import annotations

import gradio as gr

from collab_app import edit_job as e
from collab_app import widgets as w
from collab_app.inputs import example_captions, example_files
from collab_app.limits import ALPHA, EDIT_STRENGTH, MAX_TEXT_CHARS
from collab_app.state import AppState

ORDER = ("status", "edited", "strip", "seed", "steps", "alpha", "settings")


def example_rows() -> list[tuple]:
    """(face, a target caption written for another face, seed, alpha, randomize off)."""
    faces, captions = example_files("faces"), example_captions()
    return [(f, captions[(k + 1) % len(captions)], w.example_seeds(len(faces))[k], 1.0, False)
            for k, f in enumerate(faces)]


def create_tab(state: AppState, model: gr.Dropdown, attribute_names: tuple[str, ...]) -> None:
    with gr.Tab("Edit", id="edit"):
        with gr.Row():
            with gr.Column():
                face = gr.Image(label="Face to edit", type="filepath", sources=["upload", "clipboard"],
                                height=260, elem_id="edit-face")
                text = gr.Textbox(label="Target text (leave empty to keep the text unchanged)", lines=2,
                                  placeholder="This man has a long beard. He is in his fifties.",
                                  max_length=MAX_TEXT_CHARS, elem_id="edit-text")
                use_attrs, attrs = w.attribute_input(attribute_names, "edit", "Target")
                mask = w.painter("Target mask (blank: keep the layout)", "edit")
                w.mask_input(state, mask, "edit")
                if state.has_evaluator():
                    parse = gr.Button("Start the mask from the face parser's reading of the face", size="sm")
                    parse.click(w.light(state, lambda m, img: e.parse_to_mask(state, m, img)), [model, face], mask,
                                concurrency_id=w.MODEL_JOBS, api_visibility="private")
            with gr.Column():
                with gr.Row():
                    alpha = w.slider(ALPHA, "alpha (weight of the target)", "edit-alpha")
                    preset = gr.Radio(list(e.PRESETS), value="fast", label="Preset",
                                      info="; ".join(f"{k}: {v}" for k, v in e.PRESETS.items()))
                with gr.Row():
                    keep = gr.Checkbox(False, label="Keep the face's layout in the mix (the parser's mask, tuned on "
                                       "the face too: about twice the time)", visible=state.has_evaluator(),
                                       elem_id="edit-keep-layout")
                    strength = w.slider(EDIT_STRENGTH, "strength of the edited conditions against the kept layout "
                                        "(x the model's default)", "edit-strength")
                with gr.Row():
                    seed, randomize = w.seed_row("edit")
                    steps = w.steps_slider("edit", "Sampling steps")
                job = w.job_buttons("Edit", "edit")
                status = gr.Markdown(label="Status", elem_id="edit-status")
                edited = gr.Image(label="Edited", type="numpy", height=300, format="png", elem_id="edit-out",
                                  elem_classes=["pixelated"])
                strip = gr.Gallery(label="Alpha strip: the input, then alpha 0 / 0.5 / 1 / 1.5", columns=5,
                                   height=200, format="png", elem_id="edit-strip", elem_classes=["pixelated"])
                settings = w.settings_box("edit")
                rows = example_rows()
                examples = w.runnable_examples(rows, [face, text, seed, alpha, randomize], "Examples: face + target "
                                               "text + seed (click one to edit it)", "edit-examples",
                                               [0, 1, 2]) if rows else None

        def edit(model: str, face: str, text: str, mask: dict | None, alpha: float, preset: str, seed: float,
                 randomize_seed: bool, steps: float, use_attributes: bool, attributes: list[str],
                 keep_layout: bool = False, strength: float = 1.0, request: gr.Request = None,
                 progress=gr.Progress()):
            """Edit a face towards target text, mask and/or attributes."""
            req = e.edit_request(state, model, face, text, mask, alpha, preset, seed, steps, randomize_seed,
                                 w.attrs(use_attributes, attributes), strength, keep_layout)
            yield from w.views(state, (w.session(request), "edit"),
                               lambda stop: e.edit_stream(state, req, progress=progress, stop=stop), ORDER)

        def validate(model, face, text, mask, alpha, preset, seed, randomize_seed, steps, use, ticked,
                     keep_layout=False, strength=1.0):
            e.edit_request(state, model, face, text, mask, alpha, preset, seed, steps, randomize_seed,
                           w.attrs(use, ticked), strength, keep_layout)

        inputs = [model, face, text, mask, alpha, preset, seed, randomize, steps, use_attrs, attrs, keep, strength]
        w.wire_job(state, job, "edit", validate, edit, inputs, [status, edited, strip, seed, steps, alpha, settings],
                   "edit", [status, edited], examples, gpu_seconds=e.edit_seconds)
