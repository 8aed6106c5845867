"""Processes launched together on a CPU machine split its cores instead of each taking `run.threads`."""

from __future__ import annotations

import os
import warnings

import pytest

from vla_parl.training.builders import threads_per_process


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def test_one_process_or_a_gpu_keeps_the_request(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads_per_process(64, on_cpu=True) == 64
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert threads_per_process(64, on_cpu=False) == 64


def test_cpu_processes_get_their_share_of_the_cores_and_are_told(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * _cores()))
    with pytest.warns(UserWarning, match=r"run.threads=4 lowered to 1 per process"):
        assert threads_per_process(4, on_cpu=True) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    share = max(1, _cores() // 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # within the share: no change, no warning
        assert threads_per_process(share, on_cpu=True) == share
