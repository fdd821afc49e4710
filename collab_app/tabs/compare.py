"""Compare: the evaluation's methods (each modality alone, composable, collaborative; the jointly
trained baseline when installed) from one seed, side by side."""
from __future__ import annotations

import gradio as gr

from collab_app import controls as C
from collab_app import handlers as h
from collab_app import widgets as w
from collab_app.state import AppState

ORDER = ("gallery", "status", "seed", "steps", "settings")


def _intro(state: AppState) -> str:
    metrics = ("Under each image: the face parser's mask mIoU against your mask and what the attribute classifier "
               "reads." if state.has_evaluator() else
               "Install the evaluator (`checkpoints/evaluator`) to see mask mIoU and attribute readings.")
    joint = ("; with a mask and attributes, the jointly trained baseline (`joint`: one network trained on mask and "
             "attributes together, which cannot read text) last" if h.JOINT_MODEL in state.choices() else "")
    return ("The conditions of the Generate tab, one seed: each modality alone, all with equal fixed weights "
            f"(composable), and collaborative{joint}; when the Generate tab's controls (strength, steps, painted "
            "region) are set, also collaborative steered by them. " + metrics)


def create_tab(state: AppState, model: gr.Dropdown, cond: w.Conditions) -> None:
    with gr.Tab("Compare", id="compare"):
        gr.Markdown(_intro(state))
        with gr.Row():
            seed, randomize = w.seed_row("compare")
            steps = w.steps_slider("compare")
            rule = gr.Dropdown(w.RULES, value="", label="Combination rule")
        job = w.job_buttons("Compare", "compare")
        status = gr.Markdown(label="Status", elem_id="compare-status")
        gallery = gr.Gallery(label="Each method from the same seed", columns=4, height="auto", format="png",
                             elem_id="compare-gallery", object_fit="contain", elem_classes=["pixelated"])
        with gr.Accordion("Settings of this result (JSON)", open=False):
            settings = w.settings_box("compare")

        def compare(model: str, text: str, mask: dict | None, seed: float, randomize_seed: bool, steps: float,
                    rule: str, use_attributes: bool, attributes: list[str], request: gr.Request = None,
                    controls: C.Controls | None = None, progress=gr.Progress()):
            """Each given modality alone, composable and collaborative (and the joint baseline) from one seed."""
            req = h.collaborative_request(state, model, text, mask, seed, steps, rule, "the comparison",
                                          randomize_seed, w.attrs(use_attributes, attributes))
            yield from w.views(state, (w.session(request), "compare"),
                               lambda stop: h.compare_stream(state, req, progress=progress, stop=stop,
                                                                 controls=controls), ORDER)

        def validate(model, text, mask, seed, randomize_seed, steps, rule, use, ticked, controls=None):
            h.collaborative_request(state, model, text, mask, seed, steps, rule, "the comparison", randomize_seed,
                                    w.attrs(use, ticked))

        inputs = [model, cond.text, cond.mask, seed, randomize, steps, rule, cond.use_attrs, cond.attrs,
                  *cond.controls.components]
        w.wire_job(state, job, "compare", C.taking_controls(validate, cond.controls),
                   C.taking_controls(compare, cond.controls), inputs, [gallery, status, seed, steps, settings],
                   "compare", [status, gallery], gpu_seconds=120)
