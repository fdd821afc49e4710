"""Errors and warnings on their way to the page.

User mistakes raise `UserError` with a message written for the page; `friendly` turns those (and
anything unexpected) into `gr.Error` toasts and Python warnings into `gr.Warning` toasts, so nobody
sees a stack trace. Toasts need queued events: every event of the app is queued.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
import warnings
from collections import deque
from typing import Callable

from collab.conditions import ConditionError
from collab.editing import EditCancelled
from collab.masks import MaskError

log = logging.getLogger("collab.app")


class UserError(ValueError):
    """Something the user can fix; the message is shown as is."""


class Cancelled(RuntimeError):
    """The Stop button (or a closed page) ended a job."""


def _gr():
    import gradio as gr

    return gr


def to_page(e: BaseException) -> Exception:
    gr = _gr()
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, (UserError, MaskError, ConditionError, EditCancelled, Cancelled, ValueError,
                      FileNotFoundError)):
        return gr.Error(str(e), print_exception=False)  # the user's to fix: no stack trace in the log either
    log.error("unexpected error in a handler", exc_info=e)
    return gr.Error(f"Something went wrong ({type(e).__name__}: {e}). The server log has the details.",
                    print_exception=False)


class WarningRouter:
    """Python warnings raised for a request -> that request's page, with jobs overlapping.

    `warnings.catch_warnings` swaps process-wide state, so two overlapping jobs could lose or swap
    their warnings. Instead one `showwarning` hook is installed (the first time a handler runs) and
    each thread working for a request registers that request's queue; a warning goes to the queue of
    the thread that raised it, or to the log when no request owns the thread. UserWarnings are made
    "always", so a warning a second request triggers is shown again instead of being deduplicated
    process-wide."""

    def __init__(self) -> None:
        self._sinks: dict[int, deque] = {}
        self._lock = threading.Lock()
        self._hook: Callable | None = None

    def _install(self) -> None:
        """(Re)install the hook: a `catch_warnings` block elsewhere restores the previous one on exit."""
        with self._lock:
            if self._hook is not None and warnings.showwarning is self._hook:
                return
            previous = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                sink = self._sinks.get(threading.get_ident())
                if sink is None:
                    return previous(message, category, filename, lineno, file, line)
                sink.append(str(message))

            self._hook = warnings.showwarning = show
            warnings.filterwarnings("always", category=UserWarning)

    def current(self) -> deque | None:
        return self._sinks.get(threading.get_ident())

    @contextlib.contextmanager
    def collect(self, sink: deque | None):
        """Route this thread's warnings into `sink` (nothing changes when `sink` is None)."""
        if sink is None:
            yield
            return
        self._install()
        tid = threading.get_ident()
        before = self._sinks.get(tid)
        self._sinks[tid] = sink
        try:
            yield
        finally:
            if before is None:
                self._sinks.pop(tid, None)
            else:
                self._sinks[tid] = before


WARNINGS = WarningRouter()  # process-wide by nature: it wraps the warnings module's one hook


def _flush_warnings(sink: deque) -> None:
    gr = _gr()
    shown = set()
    while sink:
        message = sink.popleft()
        if message not in shown:  # each distinct warning once per flush
            shown.add(message)
            gr.Warning(message)


def friendly(fn: Callable) -> Callable:
    """Turn exceptions into readable gr.Error and Python warnings into gr.Warning toasts (shown as
    they happen); works for plain functions and generators (streaming handlers), whose steps may
    each run on another thread."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            sink: deque = deque()
            inner = fn(*args, **kwargs)
            try:
                while True:
                    with WARNINGS.collect(sink):
                        try:
                            item = next(inner)
                        except StopIteration:
                            return
                    _flush_warnings(sink)
                    yield item
            except GeneratorExit:
                inner.close()  # a closed page: let the handler stop its worker
                raise
            except Exception as e:
                raise to_page(e) from e
            finally:
                _flush_warnings(sink)
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        sink: deque = deque()
        try:
            with WARNINGS.collect(sink):
                return fn(*args, **kwargs)
        except Exception as e:
            raise to_page(e) from e
        finally:
            _flush_warnings(sink)
    return plain
