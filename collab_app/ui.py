"""The Gradio page: a header, the model selector and one module per tab (`collab_app.tabs`).

`build_app(state)` returns the Blocks; `launch_options()` the `launch()` arguments that belong to the
page (stylesheet, upload limit, footer with the API link). Model jobs share one concurrency group
sized to the number of models and wait their model's turn in line: one job per model at a time.
"""
from __future__ import annotations

import gradio as gr

from collab.classes import PALETTE

from collab_app.limits import MAX_FILE_SIZE
from collab_app.state import AppState
from collab_app.tabs import about, compare, edit, generate, influence

CLASS_PICKERS = ("gen-class", "edit-class")
PUBLIC_ENDPOINTS = ("generate", "edit", "influence", "compare")


def _class_css() -> str:
    """Colour chip before each class name of the class pickers."""
    rules = []
    for picker in CLASS_PICKERS:
        for i, rgb in enumerate(PALETTE, start=1):
            rules.append(f"#{picker} label:nth-of-type({i})::before {{content:''; display:inline-block; width:12px; "
                         f"height:12px; margin-right:4px; border:1px solid #777; background:rgb{rgb};}}")
    return "\n".join(rules)


CSS = _class_css() + """
.pixelated img { image-rendering: pixelated; }
#gen-gallery .grid-container { --grid-cols: 2 !important; }  /* one image must not fill the whole column */
.mask-preview { max-width: 300px; }  /* the preview fills its box: clicks land on the picture */
#compare-gallery .caption-label { white-space: normal; max-width: 100%; left: 0; opacity: 0.92; }
#influence-frame img { object-fit: contain; }
"""


def launch_options() -> dict:
    return dict(css=CSS, max_file_size=MAX_FILE_SIZE, footer_links=["api", "gradio"])


def build_app(state: AppState | None = None, **state_options) -> gr.Blocks:
    """The page over one `AppState` (made here from `state_options` when not given)."""
    state = state or AppState(**state_options)
    names = state.attribute_names()
    # every 10 minutes, files Gradio cached for the page more than an hour ago are deleted
    with gr.Blocks(title="collab: Collaborative Diffusion", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# Collaborative Diffusion\nMulti-modal face generation and editing: uni-modal models (text, "
                    "mask, attributes) joined per pixel and per step by learned influence functions "
                    "([paper](https://arxiv.org/abs/2304.10530)).")
        with gr.Row():
            model = gr.Dropdown(state.choices(), value=state.default_model, label="Model", scale=2)
            with gr.Accordion("Models: available and missing", open=False):
                gr.Markdown(state.models_markdown())
        conditions = generate.create_tab(state, model, names)
        edit.create_tab(state, model, names)
        influence.create_tab(state, model, conditions)
        compare.create_tab(state, model, conditions)
        about.create_tab(state, model)
    return demo
