"""The Gradio page: tabs wired to `collab_app.handlers`. No model logic here."""
from __future__ import annotations

import gradio as gr

from collab.classes import DISPLAY_NAMES

from collab_app import handlers as h
from collab_app.state import AppState

# One model, one job at a time: on 2 CPU cores parallel sampling only slows every request down.
MODEL_QUEUE = "model"
SAMPLERS = ["ddim", "dpmpp_2m"]
RULES = [("model default", ""), ("paper: learned softmax", "paper"), ("official: + cosine decay of the mask", "official")]


def _gpu(fn):
    """`spaces.GPU` on a Hugging Face ZeroGPU Space; the function itself everywhere else."""
    try:
        import spaces
        import torch

        if torch.cuda.is_available():
            return spaces.GPU(fn)
    except ImportError:
        pass
    return fn


def _mask_painter(label: str) -> gr.ImageEditor:
    return gr.ImageEditor(
        value=h.blank_mask(), label=label, type="numpy", image_mode="RGBA", format="png",
        sources=(), layers=False, transforms=(),
        brush=gr.Brush(colors=h.brush_colours(), default_color=h.brush_colours()[1], color_mode="fixed",
                       default_size=6),
        eraser=gr.Eraser(default_size=8), height=420)


def _mask_tools(painter: gr.ImageEditor, prefix: str) -> None:
    """Upload a mask file, pick an example, or paint-bucket fill by clicking the preview."""
    with gr.Accordion("Mask tools: upload, examples, fill", open=False):
        gr.HTML(h.palette_html())
        upload = gr.File(label="Upload a mask (palette PNG with label values, grey label PNG, colour PNG, .npy)",
                         file_types=[".png", ".npy", ".bmp"], elem_id=f"{prefix}-mask-file")
        upload.upload(h.friendly(h.load_mask_file), upload, painter)
        examples = h.example_files("masks")
        if examples:
            gr.Examples(examples=[[p] for p in examples], inputs=[upload], label="Example masks (face world)",
                        fn=h.friendly(h.load_mask_file), outputs=painter, run_on_click=True, cache_examples=False)
        with gr.Row():
            cls = gr.Dropdown(list(DISPLAY_NAMES), value="skin", label="Fill class")
            clear = gr.Button("Clear mask", size="sm")
        preview = gr.Image(label="Click to fill a region with the fill class", type="numpy", interactive=False,
                           height=200)
        painter.change(lambda v: v.get("composite") if isinstance(v, dict) else v, painter, preview,
                       queue=False, show_progress="hidden")

        def fill(value, name, evt: gr.SelectData):
            return h.fill_at(value, name, evt.index[0], evt.index[1])

        preview.select(h.friendly(fill), [painter, cls], painter)
        clear.click(lambda: h.blank_mask(), None, painter, queue=False)


def build_app(state: AppState) -> gr.Blocks:
    captions = h.example_captions()
    with gr.Blocks(title="collab — Collaborative Diffusion") as demo:
        gr.Markdown("# Collaborative Diffusion\nMulti-modal face generation and editing: a text model and a "
                    "mask model, joined per pixel and per step by learned influence functions.")
        with gr.Row():
            model_name = gr.Dropdown(state.choices(), value=state.default_model, label="Model", scale=2)
            with gr.Accordion("Available models", open=False):
                gr.Markdown(state.models_markdown())

        # ------------------------------------------------------------ Generate
        with gr.Tab("Generate", id="generate"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Text", value=captions[0], lines=2, max_length=h.MAX_TEXT_CHARS)
                    gr.Examples([[c] for c in captions], inputs=[text], label="Example prompts")
                    mask = _mask_painter("Mask (paint with the 19-class palette)")
                    _mask_tools(mask, "gen")
                    with gr.Row():
                        seed = gr.Number(0, label="Seed", precision=0)
                        steps = gr.Slider(1, h.MAX_STEPS, 50, step=1, label="Steps")
                        eta = gr.Slider(0, 1, 1.0, step=0.05, label="eta (DDIM)")
                    with gr.Row():
                        sampler = gr.Dropdown(SAMPLERS, value="ddim", label="Sampler")
                        batch = gr.Slider(1, h.MAX_BATCH, 1, step=1, label="Batch size")
                        rule = gr.Dropdown(RULES, value="", label="Combination rule")
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                        stop = gr.Button("Stop")
                with gr.Column():
                    gallery = gr.Gallery(label="Images", columns=2, height=360, elem_id="gen-gallery", format="png")
                    over = gr.Image(label="Mask over the first image", type="numpy", height=260, format="png")
                    status = gr.Markdown(elem_id="gen-status")
            ev_gen = go.click(_gpu(h.friendly(lambda *a: (yield from h.generate_stream(state, *a)))),
                              [model_name, text, mask, seed, steps, eta, sampler, batch, rule],
                              [gallery, over, status], concurrency_id=MODEL_QUEUE, api_name="generate")
            stop.click(None, None, None, cancels=[ev_gen])

        # ------------------------------------------------------------ Edit
        with gr.Tab("Edit", id="edit"):
            with gr.Row():
                with gr.Column():
                    face = gr.Image(label="Face to edit", type="numpy", sources=["upload", "clipboard"], height=260)
                    faces = h.example_files("faces")
                    if faces:
                        gr.Examples([[p] for p in faces], inputs=[face], label="Example faces")
                    e_text = gr.Textbox(label="Target text (leave empty to keep)", lines=2)
                    e_mask = _mask_painter("Target mask (leave blank to keep)")
                    with gr.Row():
                        from_parser = gr.Button("Start the mask from the face parser", size="sm")
                        e_clear = gr.Button("Blank target mask", size="sm")
                    _mask_tools(e_mask, "edit")
                    with gr.Row():
                        alpha = gr.Slider(0, 2.5, 1.0, step=0.05, label="alpha (target weight)")
                        preset = gr.Radio(["fast", "faithful"], value="fast", label="Preset",
                                          info="fast: 100+150 iterations, attention only; faithful: official 500+1000")
                        e_seed = gr.Number(0, label="Seed", precision=0)
                    with gr.Row():
                        e_go = gr.Button("Edit", variant="primary")
                        e_stop = gr.Button("Stop")
                with gr.Column():
                    e_status = gr.Markdown()
                    e_out = gr.Image(label="Edited", type="numpy", height=300, format="png")
                    e_strip = gr.Gallery(label="Alpha strip (input, then alpha 0 / 0.5 / 1 / 1.5)", columns=5, height=200, format="png")
            e_clear.click(lambda: h.blank_mask(), None, e_mask, queue=False)
            from_parser.click(h.friendly(lambda m, img: h.parse_to_mask(state, m, img)), [model_name, face], e_mask,
                              concurrency_id=MODEL_QUEUE)
            ev_edit = e_go.click(_gpu(h.friendly(lambda *a: (yield from h.edit_stream(state, *a)))),
                                 [model_name, face, e_text, e_mask, alpha, preset, e_seed], [e_status, e_out, e_strip],
                                 concurrency_id=MODEL_QUEUE, api_name="edit")
            e_stop.click(None, None, None, cancels=[ev_edit])

        # ------------------------------------------------------------ Influence functions
        with gr.Tab("Influence functions", id="influence"):
            gr.Markdown("Each modality's weight per pixel at every step (after the softmax and the rule), beside "
                        "the noisy latent x_t and the predicted clean image. The paper's reading: *layout first, "
                        "details later* — the mask model leads early on contours, the text model later on texture.")
            with gr.Row():
                i_steps = gr.Slider(2, 100, 50, step=1, label="Steps")
                i_seed = gr.Number(0, label="Seed", precision=0)
                i_rule = gr.Dropdown(RULES, value="", label="Combination rule")
                i_go = gr.Button("Generate and record", variant="primary", elem_id="influence-btn")
            i_status = gr.Markdown("Uses the text and mask of the Generate tab.", elem_id="influence-status")
            run_state = gr.State(None)
            with gr.Row():
                i_frame = gr.Image(label="influence maps | x_t | predicted x0", type="numpy", height=220,
                                   elem_id="influence-frame")
                i_image = gr.Image(label="Result", type="numpy", height=220)
            i_slider = gr.Slider(1, 50, 1, step=1, label="Step", elem_id="influence-slider")
            with gr.Row():
                i_gif = gr.File(label="Animation (GIF)")
                i_plot = gr.Plot(label="Mean influence per face region over time")

            def record(m, t, mk, sd, st, rl):
                run, image, fig = h.influence_run(state, m, t, mk, sd, st, rl)
                frame, where = h.influence_frame(run, 0)
                return (run, frame, image, fig, run.gif, f"{run.summary} — {where}",
                        gr.update(minimum=1, maximum=len(run.frames), value=1))

            i_go.click(_gpu(h.friendly(record)), [model_name, text, mask, i_seed, i_steps, i_rule],
                       [run_state, i_frame, i_image, i_plot, i_gif, i_status, i_slider], concurrency_id=MODEL_QUEUE,
                       api_name="influence")
            i_slider.change(lambda run, k: h.influence_frame(run, int(k) - 1), [run_state, i_slider],
                            [i_frame, i_status], queue=False, show_progress="hidden")

        # ------------------------------------------------------------ Compare
        with gr.Tab("Compare", id="compare"):
            gr.Markdown("The text and mask of the Generate tab, one seed, four ways: each model alone, both with "
                        "equal fixed weights (composable), and collaborative. With the evaluator installed, each "
                        "caption gives the parser's mask mIoU against your mask and what the attribute "
                        "classifier reads.")
            with gr.Row():
                c_steps = gr.Slider(2, 100, 50, step=1, label="Steps")
                c_seed = gr.Number(0, label="Seed", precision=0)
                c_rule = gr.Dropdown(RULES, value="", label="Combination rule")
                c_go = gr.Button("Compare", variant="primary")
            c_gallery = gr.Gallery(label="text only | mask only | composable | collaborative", columns=4, height=320,
                                   format="png")
            c_go.click(_gpu(h.friendly(lambda *a: h.compare_run(state, *a))),
                       [model_name, text, mask, c_seed, c_steps, c_rule], c_gallery, concurrency_id=MODEL_QUEUE,
                       api_name="compare")

        # ------------------------------------------------------------ About
        with gr.Tab("About", id="about"):
            about = gr.Markdown(h.about_markdown(state))
            refresh = gr.Button("Refresh", size="sm")
            refresh.click(lambda m: h.about_markdown(state, m), model_name, about, queue=False)
    return demo
