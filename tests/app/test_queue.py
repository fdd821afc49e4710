"""The launched app under load, through gradio_client: 20 concurrent requests, each answered with
its own seed's image, those that wait told how many jobs are ahead; with a small queue, the
overflow is told so, nothing is silently dropped."""
import re

import numpy as np
import pytest
from PIL import Image

from collab.pipeline import generate
from collab_app.ui import build_app

TEXT = "She is in her twenties."


def _launch(state, max_size):
    demo = build_app(state)
    demo.queue(max_size=max_size, default_concurrency_limit=1)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    return demo


def _first_image(output) -> np.ndarray:
    gallery = output[0]
    item = gallery[0]
    path = item["image"] if isinstance(item, dict) else item[0]
    path = path["path"] if isinstance(path, dict) else path
    return np.asarray(Image.open(path).convert("RGB"))


def test_twenty_concurrent_requests_are_all_served_unmixed(state):
    from gradio_client import Client

    demo = _launch(state, max_size=32)
    try:
        client = Client(demo.local_url, verbose=False)
        jobs = {seed: client.submit(model=state.default_model, text=TEXT, seed=seed, steps=2, api_name="/generate")
                for seed in range(20)}
        results = {seed: job.result(timeout=600) for seed, job in jobs.items()}
        statuses = [out[2] for job in jobs.values() for out in job.outputs()]
        # a user mistake reaches the client as the page's message, not a stack trace
        with pytest.raises(Exception, match="give a condition this model reads") as err:
            client.predict(model=state.default_model, text="", api_name="/generate")
        assert "Traceback" not in str(err.value)
    finally:
        demo.close()
    model = state.model()
    for seed, out in results.items():
        expected = generate(model, {"text": TEXT}, steps=2, eta=1.0, seed=seed).images[0]
        assert np.array_equal(_first_image(out), expected), f"request with seed {seed} got another image"
        assert f"seed {seed}" in out[2] and out[3] == seed  # the seed used comes back in its own field
    # jobs on one model run one at a time; those that wait say behind how many (the page shows the same)
    waits = [s for s in statuses if s.startswith("waiting")]
    assert waits and all(re.fullmatch(r"waiting(: | for model `.*`: )\d+ job\(s\) ahead", s) for s in waits)


def test_a_full_queue_refuses_clearly(state):
    from gradio_client import Client
    from gradio_client.utils import QueueError

    demo = _launch(state, max_size=2)
    try:
        client = Client(demo.local_url, verbose=False)
        jobs = [client.submit(model=state.default_model, text=TEXT, seed=seed, steps=40, api_name="/generate")
                for seed in range(20)]
        served, refused = 0, 0
        for job in jobs:
            try:
                job.result(timeout=600)
                served += 1
            except QueueError as e:  # the client raises with the server's reason
                assert "Queue is full" in str(e)
                refused += 1
    finally:
        demo.close()
    assert served + refused == 20 and served >= 1 and refused >= 1
