"""Installer options and messages without a database: --lock-timeout, and which relations a
statement that timed out waiting for a lock names."""

from __future__ import annotations

import argparse

import pytest

from qbo_sync.cli import build_parser, seconds
from qbo_sync.install import DEFAULT_LOCK_TIMEOUT, install
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
