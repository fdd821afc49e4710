"""Gradio app (placeholder until the app issue): prints what the package can do."""
from collab.registry import MODELS

if __name__ == "__main__":
    for entry in MODELS.values():
        print(f"{entry.name}: {entry.description} ({'available' if entry.available() else 'missing'})")
