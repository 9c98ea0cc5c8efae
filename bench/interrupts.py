"""Ctrl-C that never leaves a half-written record.

Inside `interrupts_deferred()` (a whole sweep), SIGINT and SIGTERM raise `KeyboardInterrupt` as usual,
except during a `critical()` section (a call to the record: creating a run, logging, closing): there the
signal is remembered and raised when the section ends. So an interrupt lands either between record calls
or inside a method's training, where the sweep's handler can close what is open; never inside MLflow,
where it could leave a run created but unknown to the sweep, or a batch half-logged.

A second signal while one is pending is also deferred; a third one exits at once (``os._exit(130)``), for
a record call that hangs. Signal handlers can only be installed in the main thread; elsewhere both
context managers do nothing.

Python swallows an exception raised inside a finaliser or weakref callback ("Exception ignored in ..."),
and a signal can arrive exactly there. Such a lost interrupt is caught by a `sys.unraisablehook` and
delivered again (or, inside a critical section, raised when it ends), so it is delayed, never lost.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
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


def _unraisable(previous_hook):
    def hook(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _deferring():
            if _state.depth > 0 or _state.redelivered >= 3:
                _state.lost = True  # raised at the end of (or before) the next critical section
            else:
                # Delivered again a moment later, from another thread: by then the finaliser (and this
                # hook, which would swallow an exception too) has returned.
                _state.redelivered += 1
                threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT)).start()
            return
        previous_hook(unraisable)

    return hook


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Install the deferring handler for SIGINT and SIGTERM for the duration of the block."""
    if threading.current_thread() is not threading.main_thread() or _deferring():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    previous_hook = sys.unraisablehook
    _state.installed, _state.depth, _state.pending, _state.lost, _state.redelivered = True, 0, 0, False, 0
    sys.unraisablehook = _unraisable(previous_hook)
    for s in _SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        sys.unraisablehook = previous_hook
        _state.installed = False


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A section no interrupt may split: a signal arriving inside is raised when the section ends."""
    if not _deferring():
        yield
        return
    if _state.lost and _state.depth == 0:
        _state.lost = False
        raise KeyboardInterrupt
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and (_state.pending or _state.lost):
            _state.pending, _state.lost = 0, False
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
            _state.pending, _state.lost = 0, False
