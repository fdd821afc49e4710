"""About: the method with links, the selected model as it is now, what its learned weights do."""
from __future__ import annotations

import gradio as gr

from collab_app import about
from collab_app import widgets as w
from collab_app.state import AppState


def create_tab(state: AppState, model: gr.Dropdown) -> None:
    with gr.Tab("About", id="about") as tab:
        text = gr.Markdown(about.about_markdown(state), elem_id="about-text")
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm")
            measure = gr.Button(f"Measure the learned weights on the selected model ({about.MEASURE_STEPS} steps "
                                "on an example)", size="sm", elem_id="about-measure")
        measured = gr.Markdown(elem_id="about-measured")

    show = w.light(state, lambda m: about.about_markdown(state, m))
    for event in (tab.select, refresh.click, model.change):  # the load state is read when shown
        event(show, model, text, **w.LIGHT)

    def run_measure(m, request: gr.Request = None):
        with state.stops.job((w.session(request), "about")) as flag:
            return about.measure_weights(state, m, flag)

    measure.click(w.friendly(run_measure), model, measured, concurrency_id=w.MODEL_JOBS, api_visibility="private",
                  show_progress="full")
