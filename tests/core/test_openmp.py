"""A thread's idle OpenMP team is handed back when its computation ends (it slowed other threads' torch work)."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
import torch

from napari_seamless_unet.core import openmp, progress
from napari_seamless_unet.core.progress import Progress, run

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libgomp teams: Linux")


def _threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def _in_new_thread(function):
    out = {}
    thread = threading.Thread(target=lambda: out.update(value=function()))
    thread.start()
    thread.join()
    return out["value"]


@linux_only
def test_release_ends_the_team_of_the_calling_thread_only():
    if torch.get_num_threads() < 2:
        pytest.skip("torch runs on one thread here: no OpenMP team to end")

    def body():
        before = _threads()
        torch.ones(2_000_000).sin_().sum()  # large enough to run in parallel: this thread gets a team
        team = _threads() - before
        released = openmp.release_openmp_threads()
        return team, released, _threads()

    team, released, after = _in_new_thread(body)
    assert team, "a parallel torch operation in a new thread should have started OpenMP workers"
    assert released
    assert not team & after, "the thread's OpenMP workers should have exited"


@linux_only
def test_a_released_thread_computes_the_same_afterwards():
    x = torch.linspace(0, 1, 1_000_000)

    def body():
        first = (x * 3).sum().item()
        openmp.release_openmp_threads()
        return first, (x * 3).sum().item()

    first, again = _in_new_thread(body)
    assert first == again


def test_run_releases_once_when_the_outermost_computation_ends(monkeypatch):
    calls = []
    monkeypatch.setattr(progress, "release_openmp_threads", lambda: calls.append(threading.get_ident()))
    monkeypatch.setattr(progress, "RELEASE_AFTER_SECONDS", 0.0)

    def inner():
        yield Progress(0, 1)
        return 2

    def outer():
        yield Progress(0, 1)
        value = run(inner())  # training validates through a nested run(): no release in the middle
        assert calls == []
        return value + 1

    assert run(outer()) == 3
    assert calls == [threading.get_ident()]


def test_run_releases_when_the_computation_fails(monkeypatch):
    calls = []
    monkeypatch.setattr(progress, "release_openmp_threads", lambda: calls.append(1))
    monkeypatch.setattr(progress, "RELEASE_AFTER_SECONDS", 0.0)

    def failing():
        yield Progress(0, 1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        run(failing())
    assert calls == [1]


def test_a_short_computation_keeps_its_team(monkeypatch):
    # ending and restarting a team costs 1-2 ms: not worth it after a call of a few milliseconds
    calls = []
    monkeypatch.setattr(progress, "release_openmp_threads", lambda: calls.append(1))

    def quick():
        yield Progress(0, 1)
        return 1

    def slow():
        yield Progress(0, 1)
        time.sleep(progress.RELEASE_AFTER_SECONDS * 1.5)
        return 2

    assert run(quick()) == 1
    assert calls == []
    assert run(slow()) == 2
    assert calls == [1]


def test_other_platforms_release_nothing(monkeypatch):
    monkeypatch.setattr(openmp.sys, "platform", "darwin")
    assert openmp.release_openmp_threads() is False
