"""The prediction job (Qt-free) with a three-class instance model: the labels it shows are segment's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seamless_unet import UNet, segment
from napari_seamless_unet.core.progress import run
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.weights import interior_border_classes
from napari_seamless_unet.plugin._predict_job import PredictionJob


class ClassOracle(UNet):
    """A valid three-class U-Net that reads the class of each pixel from its (unnormalised) input: 0, 1 or 2."""

    def forward(self, x):
        h, w = self.output_shape(x.shape[-2:])
        centre = x[:, :1, self.halo : self.halo + h, self.halo : self.halo + w]
        return torch.cat([-30 * (centre - k).abs() for k in range(3)], dim=1)


def test_a_three_class_model_is_labelled_alike_with_and_without_probabilities():
    _, truth = touching_discs((96, 96), n_objects=10, radius=(8, 14), seed=6)
    image = interior_border_classes(truth).astype(np.float32)
    model = ClassOracle(1, 3, 2, 2, task="instances", normalization={"mode": "none"}).eval()
    expected = segment(model, image, device="cpu")
    assert expected.max() == truth.max()
    for probabilities in (False, True):  # iter_segment, or the argmax of the probabilities
        result = run(PredictionJob(model, image, "YX", device="cpu", probabilities=probabilities).run())
        np.testing.assert_array_equal(result.labels, expected)
        assert (result.probabilities is not None) == probabilities


def test_a_viewer_job_hands_its_openmp_workers_back_when_it_ends(monkeypatch):
    # Qt keeps a finished job's pool thread for 30 s; its idle OpenMP team slowed the next job's thread.
    from napari_seamless_unet.core.errors import UNetInputError
    from napari_seamless_unet.plugin import _common

    calls = []
    monkeypatch.setattr(_common, "release_openmp_threads", lambda: calls.append(1))

    def job():
        yield 1
        return "done"

    def bad_job():
        yield 1
        raise UNetInputError("the image layer 'x' has 4 axes")

    returned = []
    for generator_function in (job, bad_job):
        guarded = _common._returning_user_errors(generator_function)()
        assert next(guarded) == 1
        assert len(calls) == len(returned)  # not while the job runs
        with pytest.raises(StopIteration) as stop:
            next(guarded)
        returned.append(stop.value.value)
    assert returned[0] == "done"
    assert isinstance(returned[1], _common.UserError)
    assert calls == [1, 1]
