"""One LocalCluster per test module of the dask tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two worker processes (the most the test machines afford), shared by a module."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
