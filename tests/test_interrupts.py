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


def test_ctrl_c_while_the_store_is_being_created_exits_130_and_leaves_a_usable_store(tmp_path, capsys, monkeypatch):
    # A signal during MLflow's schema migration (about a second for a new sqlite store) once surfaced as a
    # SQLAlchemy traceback with status 1 (the interrupt split a migration transaction): the creation is a
    # critical section, so the store is finished first and the interrupt lands after it.
    from mlflow.store.tracking import sqlalchemy_store

    from bench.cli import main

    init = sqlalchemy_store.SqlAlchemyStore.__init__
    created = []

    def interrupted_init(self, *args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # arrives while MLflow builds the schema
        init(self, *args, **kwargs)
        created.append(True)

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    args = ["run", "--methods", "itq", "--dataset", "digits", "--features", "pixels", "--bits", "8",
            "--tracking-uri", uri]
    monkeypatch.setattr(sqlalchemy_store.SqlAlchemyStore, "__init__", interrupted_init)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert created  # the schema was finished before the interrupt was raised
    monkeypatch.setattr(sqlalchemy_store.SqlAlchemyStore, "__init__", init)
    assert main(args) == 0  # the store the interrupted sweep created works
