"""Ctrl-C that never leaves a half-written record.

Inside `interrupts_deferred()` (a whole sweep), SIGINT and SIGTERM raise `KeyboardInterrupt` as usual,
except during a `critical()` section (a call to the record: creating a run, logging, closing): there the
signal is remembered and raised when the section ends. So an interrupt lands either between record calls
or inside a method's training, where the sweep's handler can close what is open; never inside MLflow,
where it could leave a run created but unknown to the sweep, or a batch half-logged.

A second signal while one is pending is also deferred; a third one exits at once (``os._exit(130)``), for
a record call that hangs. Signal handlers can only be installed in the main thread; elsewhere both
context managers do nothing.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

_state = threading.local()
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _deferring() -> bool:
    return getattr(_state, "installed", False)


def _handler(signum, frame):  # noqa: ARG001 -- the signal module's signature
    if getattr(_state, "depth", 0) > 0:
        _state.pending = getattr(_state, "pending", 0) + 1
        if _state.pending >= 3:
            os._exit(130)
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Install the deferring handler for SIGINT and SIGTERM for the duration of the block."""
    if threading.current_thread() is not threading.main_thread() or _deferring():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    _state.installed, _state.depth, _state.pending = True, 0, 0
    for s in _SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state.installed = False


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A section no interrupt may split: a signal arriving inside is raised when the section ends."""
    if not _deferring():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and _state.pending:
            _state.pending = 0
            raise KeyboardInterrupt


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Like `critical`, but a signal arriving inside is dropped (for the clean-up after an interrupt,
    which must finish closing the record; a third signal still exits at once)."""
    if not _deferring():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0:
            _state.pending = 0
