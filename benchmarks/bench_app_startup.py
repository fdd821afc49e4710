"""Seconds from `python app.py` to the first page answering (target: <= 15 s on 2 CPU cores), and to
the model being loaded in the background.

    python benchmarks/bench_app_startup.py [--model demo] [--repeats 3]
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


def once(model: str) -> float:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", model, "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit("the app exited during startup")
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    times = [once(args.model) for _ in range(args.repeats)]
    print(f"startup to first page: best {min(times):.1f} s, runs " + ", ".join(f"{t:.1f}" for t in times))


if __name__ == "__main__":
    main()
