"""A tiny random model saved in the project's format, served by the app in tests."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from collab.checkpoint import save_pretrained
from collab_app.state import AppState
from tests.conftest import VOCAB, tiny_config, tiny_model


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are overhead-bound: one intra-op thread is faster, and stays fast on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_model")
    model = tiny_model(replace(tiny_config(), vocab=str(VOCAB)))
    return save_pretrained(model, d)


@pytest.fixture()
def state(model_dir, tmp_path):
    return AppState(default_model=str(model_dir), evaluator_dir=tmp_path / "no_evaluator")


def face_mask(size: int = 32) -> np.ndarray:
    labels = np.zeros((size, size), np.uint8)
    labels[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    labels[size // 8: size // 4, size // 4: 3 * size // 4] = 13
    return labels
