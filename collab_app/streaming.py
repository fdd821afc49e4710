"""Long jobs run in a worker thread; the handler's generator yields what the worker reports.

`run_in_thread(work, stop)` calls `work(report, cancelled)` in a thread and yields `("update", x)` for
each `report(x)`, then `("result", value)`, or `("stopped", None)` when the job ended because `stop`
was set (the Stop button, a closed page). A job checks `cancelled()` between steps, through
`raise_if_stopped`. The thread sees the caller's context variables, so `gr.Progress` and `gr.Warning`
work from it.
"""
from __future__ import annotations

import contextvars
import queue
import threading
from typing import Any, Callable, Iterator

from collab.editing import EditCancelled

from collab_app.errors import WARNINGS, Cancelled

Report = Callable[[Any], None]
Work = Callable[[Report, Callable[[], bool]], Any]


def raise_if_stopped(cancelled: Callable[[], bool]) -> None:
    if cancelled():
        raise Cancelled("stopped")


def run_in_thread(work: Work, stop: threading.Event | None = None) -> Iterator[tuple[str, Any]]:
    """Yield ("update", x) per report, then ("result", value) or ("stopped", None); a failure of the
    work is raised here. Closing the iterator sets `stop` and waits for the thread."""
    stop = stop or threading.Event()
    items: queue.Queue = queue.Queue()
    sink = WARNINGS.current()  # the worker's warnings belong to the same request

    def run():
        try:
            with WARNINGS.collect(sink):
                result = work(lambda x: items.put(("update", x)), stop.is_set)
            items.put(("result", result))
        except (Cancelled, EditCancelled) as e:
            items.put(("stopped", None) if stop.is_set() else ("error", e))
        except BaseException as e:  # handed to the generator, raised there
            items.put(("error", e))

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    thread.start()
    try:
        while True:
            kind, payload = items.get()
            if kind == "error":
                raise payload
            yield kind, payload
            if kind != "update":
                return
    finally:
        stop.set()
        thread.join(timeout=60)
