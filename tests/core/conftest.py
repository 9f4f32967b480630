"""One LocalCluster per test module of the dask tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two worker processes (the most the test machines afford), shared by a module."""
    distributed = pytest.importorskip("distributed")
    saved = dict(os.environ)  # distributed sets OMP_NUM_THREADS=1 and more here for its workers: later tests'
    # child processes must not inherit them
    with (
        distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
    os.environ.clear()
    os.environ.update(saved)
