"""Generate: text, a mask and attributes in, images out, previews streaming while it samples."""
from __future__ import annotations

import gradio as gr

from collab.samplers import SAMPLERS

from collab_app import controls as C
from collab_app import handlers as h
from collab_app import widgets as w
from collab_app.inputs import example_captions, read_mask
from collab_app.limits import BATCH, ETA, GENERATE_STEPS, MAX_TEXT_CHARS, SAMPLER
from collab_app.state import AppState

ORDER = ("images", "overlay", "status", "seed", "steps", "settings")


def create_tab(state: AppState, model: gr.Dropdown, attribute_names: tuple[str, ...]) -> w.Conditions:
    """The Generate tab; returns its conditions for the tabs that reuse them."""
    with gr.Tab("Generate", id="generate"):
        seed, randomize = w.seed_row("gen", render=False)
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text", value=example_captions()[0], lines=2, max_length=MAX_TEXT_CHARS,
                                  elem_id="gen-text")
                mask = w.painter("Mask (paint with the palette; blank: text only)", "gen")
                rows = [(c, m, s, False) for c, m, s in w.example_rows()]
                examples = w.runnable_examples(rows, [text, mask, seed, randomize], "Examples: text + mask + seed "
                                               "(click one to run it)", "gen-examples", [0, 1, 2]) if rows else None
                use_attrs, attrs = w.attribute_input(attribute_names, "gen", "Condition on")
                preview = w.mask_input(state, mask, "gen")
            with gr.Column():
                with gr.Row():
                    seed.render()
                    randomize.render()
                    steps = w.steps_slider("gen", bound=GENERATE_STEPS)
                with gr.Row():
                    eta = w.slider(ETA, "eta (DDIM; 0 = deterministic)", "gen-eta")
                    sampler = gr.Dropdown(list(SAMPLERS), value=SAMPLER, label="Sampler")
                    batch = w.slider(BATCH, "Batch size", "gen-batch")
                    rule = gr.Dropdown(w.RULES, value="", label="Combination rule")
                with gr.Accordion("Steer the mix: strength, steps, where a condition leads", open=False,
                                  elem_id="gen-controls"):
                    ctl = C.build(C.KINDS if attribute_names else C.KINDS[:2], mask, read_mask,
                                  lambda fn: w.light(state, fn), w.LIGHT)
                job = w.job_buttons("Generate", "generate")
                status = gr.Markdown(label="Status", elem_id="gen-status")
                gallery = gr.Gallery(label="Images (previews of the predicted x0 while sampling)", columns=2,
                                     height=340, elem_id="gen-gallery", format="png", object_fit="contain",
                                     elem_classes=["pixelated"])
                over = gr.Image(label="Mask over the first image (alignment)", type="numpy", height=280,
                                format="png", elem_id="gen-overlay", elem_classes=["pixelated"])
                settings = w.settings_box("gen")
        if examples is not None:
            w.follow_painter(state, examples.load_input_event, mask, preview)

        def generate(model: str, text: str, mask: dict | None, seed: float, randomize_seed: bool, steps: float,
                     eta: float, sampler: str, batch_size: float, rule: str, use_attributes: bool,
                     attributes: list[str], request: gr.Request = None, controls: C.Controls | None = None,
                     progress=gr.Progress()):
            """Sample images from text, a mask (painter value) and/or attributes, steered by the controls."""
            req = h.generate_request(state, model, text, mask, seed, steps, eta, sampler, batch_size, rule,
                                     randomize_seed, w.attrs(use_attributes, attributes))
            yield from w.views(state, (w.session(request), "generate"),
                               lambda stop: h.generate_stream(state, req, progress=progress, stop=stop,
                                                                  controls=controls), ORDER)

        def validate(model, text, mask, seed, randomize_seed, steps, eta, sampler, batch_size, rule, use, ticked,
                     controls=None):  # the controls' values are checked as they are read
            h.generate_request(state, model, text, mask, seed, steps, eta, sampler, batch_size, rule,
                               randomize_seed, w.attrs(use, ticked))

        inputs = [model, text, mask, seed, randomize, steps, eta, sampler, batch, rule, use_attrs, attrs,
                  *ctl.components]
        w.wire_job(state, job, "generate", C.taking_controls(validate, ctl), C.taking_controls(generate, ctl), inputs,
                   [gallery, over, status, seed, steps, settings], "generate", [status, gallery], examples)
    return w.Conditions(text, mask, use_attrs, attrs, preview, ctl)
