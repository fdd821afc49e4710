"""Influence functions: every step's learned weights beside x_t and the predicted x0, a step slider,
a GIF and the region plot, for the Generate tab's conditions."""
from __future__ import annotations

import gradio as gr

from collab_app import controls as C
from collab_app import handlers as h
from collab_app import widgets as w
from collab_app.state import AppState

ORDER = ("run", "frame", "slider", "image", "gif", "plot", "status", "seed", "steps", "settings")
INTRO = ("Each modality's weight per pixel at every step (after the softmax and the rule), beside the noisy "
         "latent x_t and the predicted clean image. The paper's reading: *layout first, details later*: the mask "
         "model leads early on contours, the text model later on texture. Uses the conditions of the Generate tab "
         "(two or more of text, mask, attributes) and its controls (strength, steps, painted region): the "
         "animation shows their effect.")


def create_tab(state: AppState, model: gr.Dropdown, cond: w.Conditions) -> None:
    with gr.Tab("Influence functions", id="influence"):
        gr.Markdown(INTRO)
        seed, randomize = w.seed_row("influence", render=False)
        rows = [(c, m, s, False) for c, m, s in w.example_rows()]
        examples = w.runnable_examples(rows, [cond.text, cond.mask, seed, randomize],
                                       "Examples: text + mask + seed (click one to record it)", "influence-examples",
                                       [0, 1, 2]) if rows else None
        with gr.Row():
            seed.render()
            randomize.render()
            steps = w.steps_slider("influence")
            rule = gr.Dropdown(w.RULES, value="", label="Combination rule")
        job = w.job_buttons("Generate and record", "influence")
        status = gr.Markdown("Nothing recorded yet.", label="Status", elem_id="influence-status")
        run_state = gr.State(None)
        frame = gr.Image(label="Influence maps, x_t and predicted x0", show_label=False, type="filepath",
                         elem_id="influence-frame", interactive=False, format="png")
        step = gr.Slider(1, 50, 1, step=1, label="Step", elem_id="influence-slider")
        with gr.Row():
            image = gr.Image(label="Result", type="numpy", height=260, format="png", elem_classes=["pixelated"])
            gif = gr.Image(label="Animation (GIF; download with the arrow)", type="filepath", height=260,
                           elem_id="influence-gif")
        plot = gr.Plot(label="Mean influence per face region over time")
        with gr.Accordion("Settings of this result (JSON)", open=False):
            settings = w.settings_box("influence")

        def influence(model: str, text: str, mask: dict | None, seed: float, randomize_seed: bool, steps: float,
                      rule: str, use_attributes: bool, attributes: list[str], request: gr.Request = None,
                      controls: C.Controls | None = None, progress=gr.Progress()):
            """Record every step's influence maps for two or more conditions."""
            req = h.collaborative_request(state, model, text, mask, seed, steps, rule, "the influence view",
                                          randomize_seed, w.attrs(use_attributes, attributes))
            yield from w.views(state, (w.session(request), "influence"),
                               lambda stop: h.influence_stream(state, req, progress=progress, stop=stop,
                                                                   controls=controls), ORDER,
                               {"slider": lambda n: gr.Slider(minimum=1, maximum=n, value=1), "run": lambda r: r})

        def validate(model, text, mask, seed, randomize_seed, steps, rule, use, ticked, controls=None):
            h.collaborative_request(state, model, text, mask, seed, steps, rule, "the influence view",
                                    randomize_seed, w.attrs(use, ticked))

        if examples is not None:
            w.follow_painter(state, examples.load_input_event, cond.mask, cond.preview)
        inputs = [model, cond.text, cond.mask, seed, randomize, steps, rule, cond.use_attrs, cond.attrs,
                  *cond.controls.components]
        w.wire_job(state, job, "influence", C.taking_controls(validate, cond.controls),
                   C.taking_controls(influence, cond.controls), inputs,
                   [run_state, frame, step, image, gif, plot, status, seed, steps, settings], "influence",
                   [status, frame], examples, gpu_seconds=90)
        step.change(w.light(state, h.influence_caption), [run_state, step], [frame, status], **w.LIGHT)
