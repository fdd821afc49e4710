"""A tiny random model saved in the project's format, served by the app in tests."""
from dataclasses import replace

import numpy as np
import pytest

from collab.checkpoint import save_pretrained
from collab_app.state import AppState
from tests.conftest import VOCAB, tiny_config, tiny_model


@pytest.fixture(autouse=True)
def _one_thread_for_the_app(one_thread):
    """Every app test runs its tiny models on one thread (see tests/conftest.py `one_thread`)."""
    yield


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
