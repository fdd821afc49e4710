"""Seconds from `python app.py` to the page answering (target: <= 15 s on 2 CPU cores), and to the
first image (a 1-step generation through the API, so it includes loading the model).

    python benchmarks/bench_app_startup.py [--model demo] [--repeats 3] [--no-image]
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(url: str, proc: subprocess.Popen) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("the app exited during startup")
            time.sleep(0.05)


def once(model: str, image: bool) -> tuple[float, float | None]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", model, "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_page(url, proc)
        page = time.perf_counter() - t0
        if not image:
            return page, None
        from gradio_client import Client

        Client(url, verbose=False).predict(model=model, text="She is in her twenties.", steps=1, api_name="/generate")
        return page, time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-image", action="store_true", help="time the page only")
    args = ap.parse_args()
    runs = [once(args.model, not args.no_image) for _ in range(args.repeats)]
    pages = [p for p, _ in runs]
    print(f"startup to first page: best {min(pages):.1f} s, runs " + ", ".join(f"{t:.1f}" for t in pages))
    if not args.no_image:
        images = [i for _, i in runs]
        print(f"startup to first image (1 step, model loaded): best {min(images):.1f} s, runs "
              + ", ".join(f"{t:.1f}" for t in images))


if __name__ == "__main__":
    main()
