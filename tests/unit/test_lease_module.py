"""qbo_sync_db.lease without a database: when the keeper extends, and that it stops a job whose
lease is gone."""

from __future__ import annotations

import pytest
from qbo_sync_db import lease


class Stop(Exception):
    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class FakePlpy:
    """Answers extend_lease with the next value of `answers` (None: the lease is gone)."""

    def __init__(self, answers: list) -> None:
        self.answers = answers
        self.calls: list[list] = []

    def prepare(self, query: str, types: list[str]) -> str:
        assert "qbo_sync.extend_lease" in query and types == ["uuid", "uuid", "numeric"]
        return query

    def execute(self, plan: str, args: list) -> list[dict]:
        self.calls.append(args)
        return [{"locked_until": self.answers.pop(0)}]

    def error(self, message: str, **kwargs: str) -> None:
        raise Stop(message, kwargs["sqlstate"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_extends_once_a_third_of_the_lease_has_passed():
    plpy, clock = FakePlpy(["t1", "t2"]), Clock()
    keeper = lease.LeaseKeeper(plpy, "job", "lease", 300, clock=clock)
    keeper.keep()
    clock.now += 99
    keeper.keep()
    assert plpy.calls == []  # not yet: the lease has two thirds left
    clock.now += 1
    keeper.keep()
    assert plpy.calls == [["job", "lease", 300]] and keeper.extensions == 1
    clock.now += 50
    keeper.keep()
    assert len(plpy.calls) == 1  # counted from the last extension
    clock.now += 50
    keeper.keep()
    assert len(plpy.calls) == 2


def test_a_lost_lease_stops_the_job_with_its_own_sqlstate():
    plpy, clock = FakePlpy([None]), Clock()
    keeper = lease.LeaseKeeper(plpy, "job-7", "lease", 30, clock=clock)
    clock.now += 10
    with pytest.raises(Stop, match="lease lost: queue job job-7") as info:
        keeper.keep()
    assert info.value.sqlstate == "QS003"


def test_the_lease_must_be_positive():
    with pytest.raises(ValueError):
        lease.LeaseKeeper(FakePlpy([]), "job", "lease", 0)
