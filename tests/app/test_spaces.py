"""What a Hugging Face Space needs: GPU time asked per job, models placed at startup in the main
thread, and the app's files cleaned while it runs."""
import os
import sys
import time
import types

import numpy as np
import torch

import app
from collab_app import ui
from collab_app import widgets as w
from collab_app.edit_job import edit_seconds


def test_gpu_duration_is_asked_per_job(monkeypatch):
    asked = []
    fake = types.SimpleNamespace(GPU=lambda duration: (lambda fn: asked.append(duration) or fn))
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    job = w.gpu(lambda: "ran", duration=edit_seconds)
    assert job() == "ran" and asked == [edit_seconds]
    assert edit_seconds("demo", None, "", None, 1.0, "fast") == 60
    assert edit_seconds("demo", None, "", None, 1.0, "faithful") == 180 > 60  # longer than the default
    assert edit_seconds("official_256", None, "", None, 1.0, "faithful") == 720
    assert edit_seconds(model="official_256", preset="fast") == 240  # called with named inputs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plain = lambda: None  # noqa: E731
    assert w.gpu(plain, 90) is plain and asked == [edit_seconds]


def test_each_job_asks_for_its_own_gpu_time(monkeypatch, state):
    """The page wires each public job through `spaces.GPU` with its duration."""
    asked = {}
    fake = types.SimpleNamespace(GPU=lambda duration: (lambda fn: asked.setdefault(fn.__name__, duration) and fn))
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ui.build_app(state)
    assert asked == {"generate": 60, "edit": edit_seconds, "influence": 90, "compare": 120}


def test_zero_gpu_is_recognised_from_its_environment(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert app._zero_gpu() is False
    imported = types.ModuleType("spaces")
    monkeypatch.setitem(sys.modules, "spaces", imported)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert app._zero_gpu() is True


def test_warm_up_loads_the_model_and_its_pretrained_text_backbone(tmp_path):
    from dataclasses import replace

    from collab.checkpoint import save_pretrained
    from collab.encoders import PretrainedTextEncoderConfig
    from collab_app.state import AppState
    from tests.conftest import tiny_config, tiny_model

    cfg = tiny_config()
    text = replace(cfg.modality("text"), encoder=PretrainedTextEncoderConfig(context_dim=16))
    save_pretrained(tiny_model(replace(cfg, modalities=(cfg.modality("mask"), text))), tmp_path / "m")
    state = AppState(default_model=str(tmp_path / "m"), evaluator_dir=tmp_path / "none")
    assert state.config().modality("text").encoder.backbone == "all-MiniLM-L6-v2"  # read without loading
    state.warm_up()
    assert state.models and state.models[str(tmp_path / "m")].encoders["text"]._backbone


def test_old_output_files_are_deleted_while_the_app_runs(state):
    state.files_max_age_s = 1.0
    folder = state.files_dir()
    old, new = w._image_file(np.zeros((4, 4, 3), np.uint8), folder), w._image_file(np.ones((4, 4, 3), np.uint8), folder)
    sub = folder / "influence_x"
    sub.mkdir()
    past = time.time() - 10
    for path in (old, new, sub):
        os.utime(path, (past, past))
    w._image_file(np.ones((4, 4, 3), np.uint8), folder)  # sent again: in use
    state._cleaned = 0.0
    assert state.files_dir() == folder
    assert not os.path.exists(old) and not sub.exists() and os.path.exists(new)


def test_gradio_cache_is_cleaned(state):
    assert ui.build_app(state).delete_cache == (600, 3600)
