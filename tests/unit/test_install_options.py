"""Installer options and messages without a database: --lock-timeout, which relations a
statement that timed out waiting for a lock names, and an installation that lost a deadlock
starting again."""

from __future__ import annotations

import argparse

import psycopg
import pytest

from qbo_sync import install as installer
from qbo_sync.cli import build_parser, seconds
from qbo_sync.install import DEFAULT_LOCK_TIMEOUT, InstallError, install
from qbo_sync.lockwait import named_relations


def test_lock_timeout_defaults_to_ten_seconds_and_takes_fractions():
    assert DEFAULT_LOCK_TIMEOUT == 10.0
    assert build_parser().parse_args(["install"]).lock_timeout == DEFAULT_LOCK_TIMEOUT
    assert build_parser().parse_args(["install", "--lock-timeout", "2.5"]).lock_timeout == 2.5
    assert seconds("0") == 0.0  # no limit, as PostgreSQL's lock_timeout = 0


@pytest.mark.parametrize("text", ["-1", "ten", "nan"])
def test_lock_timeout_must_be_seconds(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not a number of seconds"):
        seconds(text)


def test_install_refuses_a_negative_lock_timeout_before_connecting():
    with pytest.raises(ValueError, match="lock_timeout must be 0"):
        install("postgresql://nobody@127.0.0.1:1/none", lock_timeout=-1)


def test_the_context_names_the_relation_before_the_statement_does():
    do_block = (
        "DO $$ BEGIN EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t); END $$;"
    )
    context = (
        'SQL statement "ALTER TABLE public.customer_profile ENABLE ROW LEVEL SECURITY"\n'
        "PL/pgSQL function inline_code_block line 6 at EXECUTE"
    )
    assert named_relations(context, do_block) == ["public.customer_profile"]


def test_a_row_lock_names_its_table_in_either_schema():
    context = 'while locking tuple (0,2) in relation "entity"'
    assert named_relations(context, "INSERT INTO qbo_sync.entity ...") == [
        "public.entity",
        "qbo_sync.entity",
    ]


def test_a_plain_statement_names_its_relations_once_each():
    statement = (
        "REVOKE ALL ON TABLE public.qbo_sync_queue, public.qbo_sync_history,\n"
        "    public.qbo_sync_queue FROM PUBLIC;"
    )
    assert named_relations(None, statement) == ["public.qbo_sync_queue", "public.qbo_sync_history"]
    assert named_relations(None, "SELECT 1;") == []


def failing_with(error: Exception) -> InstallError:
    try:
        raise InstallError("installation failed, nothing was changed") from error
    except InstallError as exc:
        return exc


def test_an_install_that_lost_a_deadlock_starts_again_and_no_other_failure_does(monkeypatch):
    """A worker running while qbo-sync is upgraded may lock in another order: the server then
    fails one side of the cycle; when that is the installation, it changed nothing and starts
    again (a few times); any other failure is reported at once."""
    monkeypatch.setattr(installer.time, "sleep", lambda seconds: None)
    outcomes: list[object] = [
        failing_with(psycopg.errors.DeadlockDetected("deadlock detected")),
        "installed",
    ]
    calls: list[int] = []

    def once(*args: object) -> object:
        calls.append(1)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(installer, "_install_once", once)
    assert install("postgresql://x@127.0.0.1:1/db") == "installed" and len(calls) == 2

    calls.clear()
    outcomes[:] = [failing_with(psycopg.errors.DeadlockDetected("deadlock detected"))] * 5
    with pytest.raises(InstallError):
        install("postgresql://x@127.0.0.1:1/db")
    assert len(calls) == installer.DEADLOCK_ATTEMPTS == 3

    calls.clear()
    outcomes[:] = [failing_with(psycopg.errors.DivisionByZero("division by zero")), "installed"]
    with pytest.raises(InstallError):
        install("postgresql://x@127.0.0.1:1/db")
    assert len(calls) == 1
