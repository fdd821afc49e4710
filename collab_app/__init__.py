"""The Gradio app over the `collab` package (UI wiring only; `python app.py` runs it)."""
