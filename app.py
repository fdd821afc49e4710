"""collab — the Collaborative Diffusion app.

    python app.py [--model demo|official_256|official_512|DIR] [--device auto|cpu|cuda] [--port 7860]

Serves the embedded demo model by default; official checkpoints found in checkpoints/ appear in the
model selector. Models load on first use (in the background right after startup), so the page is
up in seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading


def _zero_gpu() -> bool:
    """On a ZeroGPU Space (SPACES_ZERO_GPU=true), `spaces` is imported before torch: it patches torch so
    that models placed on CUDA at startup, in the main thread, follow the GPU that each job gets."""
    if os.environ.get("SPACES_ZERO_GPU", "").lower() not in ("1", "t", "true"):
        return False
    import spaces  # noqa: F401

    return True


def _warm_up(state) -> None:
    try:
        state.warm_up()
    except Exception as e:  # the page says the same when a job asks for the model
        print(f"collab: the model was not loaded at startup: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.environ.get("COLLAB_MODEL", "demo"))
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--evaluator", default=None, help="evaluator directory (default: checkpoints/evaluator)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--queue-size", type=int, default=32, help="requests waiting beyond this are refused")
    ap.add_argument("--no-warmup", action="store_true", help="do not load the model before the first request")
    args = ap.parse_args(argv)
    zero_gpu = _zero_gpu()

    from collab_app.state import AppState, pick_device
    from collab_app.ui import build_app, launch_options

    state = AppState(default_model=args.model, device=pick_device(args.device), evaluator_dir=args.evaluator)
    demo = build_app(state)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=1)
    if zero_gpu:  # its torch patching reaches only this thread: load and place the models here, now
        _warm_up(state)
    elif not args.no_warmup:  # load weights while the page is already being served
        threading.Thread(target=_warm_up, args=(state,), daemon=True).start()
    demo.launch(server_name=args.host, server_port=args.port, **launch_options())


if __name__ == "__main__":
    main()
