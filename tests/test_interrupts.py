"""`bench.interrupts`: a signal inside a critical section waits for its end; a lost one is raised later."""
from __future__ import annotations

import signal
import sys
import time
import types

import pytest

from bench.interrupts import critical, interrupts_deferred, shielded


def test_a_signal_inside_a_critical_section_is_raised_when_it_ends():
    done = []
    with interrupts_deferred():
        with pytest.raises(KeyboardInterrupt):
            with critical():
                signal.raise_signal(signal.SIGINT)
                done.append("the section finished first")
    assert done == ["the section finished first"]


def test_sigterm_is_an_interrupt_too_and_outside_a_section_it_is_immediate():
    with interrupts_deferred():
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
            pytest.fail("not interrupted")


def test_shielded_drops_the_signal_so_clean_up_can_finish():
    with interrupts_deferred():
        with shielded():
            signal.raise_signal(signal.SIGINT)
        with critical():
            pass  # nothing pending any more


def _swallowed():
    return types.SimpleNamespace(exc_type=KeyboardInterrupt, exc_value=KeyboardInterrupt(), exc_traceback=None,
                                 err_msg=None, object=None)


def test_an_interrupt_swallowed_by_a_finaliser_is_delivered_again():
    with interrupts_deferred():
        with pytest.raises(KeyboardInterrupt):
            sys.unraisablehook(_swallowed())
            time.sleep(5)
            pytest.fail("a swallowed interrupt must be delivered again")


def test_an_interrupt_swallowed_inside_a_critical_section_is_raised_when_it_ends():
    done = []
    with interrupts_deferred():
        with pytest.raises(KeyboardInterrupt):
            with critical():
                sys.unraisablehook(_swallowed())
                done.append("the section finished first")
    assert done == ["the section finished first"]


def test_a_real_finaliser_does_not_lose_the_interrupt():
    class Interrupting:
        def __del__(self):
            raise KeyboardInterrupt  # what the signal handler does when SIGINT lands in a finaliser

    with interrupts_deferred():
        with pytest.raises(KeyboardInterrupt):
            Interrupting()  # the exception in __del__ is swallowed by Python ("Exception ignored")
            time.sleep(5)
            pytest.fail("the interrupt was lost")


def test_handlers_are_restored_afterwards():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.unraisablehook
    with interrupts_deferred():
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.unraisablehook) == before
