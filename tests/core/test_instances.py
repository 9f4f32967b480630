"""Instances from probabilities: thresholds, sizes, holes, touching objects given back whole, the watershed, ids
unique across a stack, objects linked through planes, the block-wise path, and segment() == the same of predict()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from scipy import ndimage

from napari_seamless_unet import UNet, UNetInputError, instances_from_probabilities, predict, segment
from napari_seamless_unet.core import inference, instances
from napari_seamless_unet.core.metrics import instance_iou_matrix
from napari_seamless_unet.core.postprocess import restore_borders
from napari_seamless_unet.core.synthetic import touching_discs
from napari_seamless_unet.core.weights import separate_touching


def probabilities(foreground) -> np.ndarray:
    """A perfect probability map (classes first) of a foreground mask or label image, stack or plane."""
    f = (np.asarray(foreground) > 0).astype(np.float32)
    return np.stack([1 - f, f])


def disc(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def assert_same_partition(labels: np.ndarray, expected: np.ndarray) -> None:
    """Exactly the same objects, ids aside: each id maps to one expected id and back, background to background."""
    np.testing.assert_array_equal(labels > 0, expected > 0)
    pairs = {(int(a), int(b)) for a, b in zip(labels[labels > 0], expected[labels > 0])}
    n = len(np.unique(expected[expected > 0]))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}) == n


def separate_objects(seed=0, shape=(120, 140)) -> np.ndarray:
    """Discs, ellipses and rectangles that never come within 3 pixels of each other."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k in range(1, 60):
        cy, cx, a, b = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(2, 12), rng.uniform(2, 12)
        obj = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1 if k % 3 else (abs(yy - cy) <= a) & (abs(xx - cx) <= b)
        if not (ndimage.binary_dilation(obj, iterations=3) & (labels > 0)).any():
            labels[obj] = k
    return labels


def object_ious(result: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each true object, the IoU of the predicted object that overlaps it most."""
    return instance_iou_matrix(result, truth).max(1)


# -- one plane -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["components", "watershed"])
def test_a_perfect_probability_map_gives_back_the_true_instances(method):
    truth = separate_objects()
    assert truth.max() > 15
    result = instances_from_probabilities(probabilities(truth), method=method)
    assert result.dtype == np.int32
    assert_same_partition(result, truth)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_training_target_of_touching_discs_comes_back_whole(seed):
    _, truth = touching_discs(seed=seed)
    target = separate_touching(truth) > 0  # foreground minus the pixels where two objects touch
    gapped = object_ious(instances_from_probabilities(probabilities(target), restore_borders=False), truth)
    whole = object_ious(instances_from_probabilities(probabilities(target)), truth)
    assert gapped.mean() < 0.97 and gapped.min() < 0.9  # what the bare components give
    assert whole.mean() >= 0.98 and whole.min() >= 0.95, (whole.mean(), whole.min())


def test_touching_discs_over_ten_images():
    """Mean IoU >= 0.985 on every image; objects cut in two by the gap itself (whose pieces no rule can tell
    from two objects) and slivers of a dozen pixels keep a few objects of 400 below 0.95."""
    ious = []
    for seed in range(10):
        _, truth = touching_discs(seed=seed)
        result = instances_from_probabilities(probabilities(separate_touching(truth) > 0))
        ious.append(object_ious(result, truth))
        assert ious[-1].mean() >= 0.985, seed
    assert np.mean(np.concatenate(ious) >= 0.95) >= 0.985


def test_borders_are_given_back_between_objects_only():
    labels = np.zeros((30, 60), np.int32)
    labels[5:25, 5:20], labels[5:25, 22:35] = 1, 2  # a two-pixel gap between 1 and 2
    labels[5:25, 38:50] = 3  # three pixels from 2: real background
    restored = restore_borders(labels)
    np.testing.assert_array_equal(restored[10, 19:24], [1, 1, 2, 2, 2])  # each gap pixel to the nearer object
    assert (restored[5:25, 20] == 1).all() and (restored[5:25, 21] > 0).all()
    np.testing.assert_array_equal(restored[:, 35:38], 0)  # a three-pixel channel stays background
    assert ((restored > 0) & (labels == 0)).sum() == 2 * 20  # nothing else
    lonely = np.zeros((20, 20), np.int32)
    lonely[5:10, 5:10] = 1
    np.testing.assert_array_equal(restore_borders(lonely), lonely)  # an object alone never grows


def test_holes_are_filled_per_object():
    shape = (60, 90)
    ring = disc(shape, 30, 25, 18) & ~disc(shape, 30, 25, 10)
    inner = disc(shape, 30, 25, 4)  # another object inside the hole
    # Two C shapes around one background region: a hole of neither
    c1 = disc(shape, 30, 68, 18) & ~disc(shape, 30, 68, 12) & (np.mgrid[:60, :90][1] < 66)
    c2 = disc(shape, 30, 68, 18) & ~disc(shape, 30, 68, 12) & (np.mgrid[:60, :90][1] > 70)
    truth = np.zeros(shape, np.int32)
    truth[ring], truth[inner], truth[c1], truth[c2] = 1, 2, 3, 4
    filled = instances_from_probabilities(probabilities(truth), restore_borders=False)
    expected = truth.copy()
    expected[disc(shape, 30, 25, 10) & ~inner] = 1
    assert_same_partition(filled, expected)
    assert_same_partition(instances_from_probabilities(probabilities(truth), fill_holes=False), truth)


def test_threshold_and_min_size():
    shape = (40, 80)
    p = np.zeros(shape, np.float32)
    p[disc(shape, 20, 15, 8)] = 0.9
    p[disc(shape, 20, 40, 8)] = 0.6
    p[disc(shape, 20, 65, 2)] = 0.9  # 13 pixels
    p[5, 5] = 0.5  # not above 0.5
    prob = np.stack([1 - p, p])
    assert instances_from_probabilities(prob, threshold=0.5).max() == 3
    assert instances_from_probabilities(prob, threshold=0.7).max() == 2
    assert instances_from_probabilities(prob).max() == 2  # the default threshold is 0.7
    assert instances_from_probabilities(prob, threshold=0.4).max() == 4
    small = instances_from_probabilities(prob, threshold=0.5, min_size=14)
    assert small.max() == 2 and small[20, 65] == 0 and small[20, 15] > 0
    assert instances_from_probabilities(prob, threshold=0.5, min_size=13).max() == 3


def test_the_watershed_splits_discs_joined_by_a_neck():
    shape = (50, 80)
    left, right = disc(shape, 25, 20, 12), disc(shape, 25, 56, 14)
    neck = np.zeros(shape, bool)
    neck[24:27, 20:56] = True  # three pixels wide
    prob = probabilities(left | right | neck)
    assert instances_from_probabilities(prob).max() == 1
    split = instances_from_probabilities(prob, method="watershed")
    assert split.max() == 2
    for d in (left, right):
        counts = np.unique(split[d], return_counts=True)[1]
        assert counts.max() >= 0.97 * d.sum()  # each disc is (almost all) one object


# -- stacks ----------------------------------------------------------------------------------------------------
def test_ids_are_unique_across_a_stack():
    stack = np.stack([separate_objects(seed) for seed in range(3)])
    result = instances_from_probabilities(probabilities(stack))
    ids = [set(np.unique(plane[plane > 0]).tolist()) for plane in result]
    assert not ids[0] & ids[1] and not ids[1] & ids[2] and not ids[0] & ids[2]
    assert result.max() == sum(len(i) for i in ids)  # 1..n, no id skipped
    for plane, truth in zip(result, stack):
        assert_same_partition(plane, truth)


def test_a_drifting_disc_keeps_its_id_through_the_planes():
    shape = (60, 90)
    moving = np.stack([disc(shape, 30, 20 + 4 * z, 10) for z in range(5)])
    still = np.stack([disc(shape, 10, 80, 5)] * 5)
    stack = moving * 1 + still * 2
    result = instances_from_probabilities(probabilities(stack), link_planes=True)
    assert len(np.unique(result[moving])) == 1 and len(np.unique(result[still])) == 1
    assert result.max() == 2
    unlinked = instances_from_probabilities(probabilities(stack))
    assert len(np.unique(unlinked[moving])) == 5


def test_linking_never_gives_two_objects_of_a_plane_one_id():
    shape = (60, 100)
    planes = [
        disc(shape, 30, 32, 9) * 1 + disc(shape, 30, 68, 9) * 2,  # two discs ...
        disc(shape, 30, 38, 9) * 1 + disc(shape, 30, 62, 9) * 2,  # ... moving towards each other ...
        (disc(shape, 30, 42, 9) | disc(shape, 30, 58, 9)) * 1,  # ... merge into one object ...
        disc(shape, 30, 38, 9) * 1 + disc(shape, 30, 62, 9) * 2,  # ... and part again
        disc(shape, 30, 62, 9) * 1 + disc(shape, 30, 38, 9) * 2,  # swapped
    ]
    result = instances_from_probabilities(probabilities(np.stack(planes)), link_planes=True)
    for plane, truth in zip(result, planes):
        assert_same_partition(plane, truth)  # in particular: as many ids as objects, in every plane
    assert result[2].max() in (result[1][30, 38], result[1][30, 62])  # the merged object continues one of them
    assert {result[3][30, 38], result[3][30, 62]} >= {result[2][30, 50]}  # one part continues it
    assert result.max() == 3  # the other part is new; the swapped plane continues both by position


def test_a_split_object_continues_in_one_part_only():
    shape = (40, 60)
    whole = np.zeros(shape, np.int32)
    whole[10:30, 10:50] = 1
    halves = np.zeros(shape, np.int32)
    halves[10:30, 10:29], halves[10:30, 31:50] = 1, 2  # each half has IoU 0.475 with the whole
    result = instances_from_probabilities(probabilities(np.stack([whole, halves])), link_planes=True)
    assert len({result[1][20, 15], result[1][20, 45]}) == 2
    assert result[0][20, 20] in (result[1][20, 15], result[1][20, 45])


def test_only_neighbouring_planes_along_the_last_stack_axis_are_linked():
    shape = (40, 40)
    t_z = np.zeros((2, 3, *shape), np.int32)
    t_z[:, :, 10:20, 10:20] = 1
    prob = np.moveaxis(probabilities(t_z), 0, 2)  # TZCYX
    result = instances_from_probabilities(prob, axes="TZCYX", link_planes=True)
    assert result.shape == t_z.shape
    assert len(np.unique(result[0][t_z[0] > 0])) == 1 and len(np.unique(result[1][t_z[1] > 0])) == 1
    assert result[0, 0, 15, 15] != result[1, 0, 15, 15]  # Z is linked, T is not


def test_class_axis_anywhere_and_zarr_inputs_and_outputs(tmp_path):
    stack = np.stack([separate_objects(seed) for seed in range(2)])
    expected = instances_from_probabilities(probabilities(stack))
    zcyx = np.ascontiguousarray(np.moveaxis(probabilities(stack), 0, 1))  # as an ImageJ TIFF stores CZYX
    np.testing.assert_array_equal(instances_from_probabilities(zcyx, axes="ZCYX"), expected)
    np.testing.assert_array_equal(instances_from_probabilities(probabilities(stack), axes="ZYX"), expected)
    stored = zarr.open_array(str(tmp_path / "p.zarr"), mode="w", shape=zcyx.shape, chunks=(1, 1, 32, 32), dtype="f4")
    stored[:] = zcyx
    out = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=stack.shape, chunks=(1, 32, 32), dtype="i4")
    assert instances_from_probabilities(stored, axes="ZCYX", out=out) is out
    np.testing.assert_array_equal(out[:], expected)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"min_size": -1}, "min_size"),
        ({"method": "magic"}, "method"),
        ({"axes": "ZYX"}, "do not fit"),
        ({"out": np.zeros((20, 30), np.uint16)}, "32 bits"),
        ({"out": np.zeros((21, 30), np.int32)}, "shape"),
    ],
)
def test_bad_options_are_refused_with_clear_messages(kwargs, message):
    with pytest.raises(UNetInputError, match=message):
        instances_from_probabilities(np.zeros((2, 20, 30), np.float32), **kwargs)


def test_bad_probabilities_are_refused():
    with pytest.raises(UNetInputError, match="1 classes"):
        instances_from_probabilities(np.zeros((1, 20, 30), np.float32))
    with pytest.raises(UNetInputError, match="dtype"):
        instances_from_probabilities(np.zeros((2, 20, 30), np.int32))


# -- planes larger than memory ---------------------------------------------------------------------------------
def use_small_blocks(monkeypatch) -> None:
    """Planes of more than 1000 pixels are labelled block by block, in blocks of 16 x 16."""
    monkeypatch.setattr(instances, "BLOCKWISE_PIXELS", 1000)
    monkeypatch.setattr(instances, "BLOCK", 16)


@pytest.fixture
def small_blocks(monkeypatch):
    use_small_blocks(monkeypatch)


@pytest.mark.parametrize("threshold,min_size", [(0.5, 0), (0.7, 6)])
def test_blockwise_labels_match_in_memory_labels(monkeypatch, threshold, min_size, tmp_path):
    rng = np.random.default_rng(3)
    smooth = ndimage.gaussian_filter(rng.random((3, 70, 50)), (0, 1.5, 1.5))
    p = (smooth - smooth.mean()) / smooth.std() / 4 + 0.5  # blobs that blocks of 16 x 16 cut
    prob = np.stack([1 - p, p]).astype(np.float32)
    options = {"threshold": threshold, "min_size": min_size, "fill_holes": False, "restore_borders": False}
    expected = instances_from_probabilities(prob, **options)
    use_small_blocks(monkeypatch)
    out = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=p.shape, chunks=(1, 16, 16), dtype="i4")
    result = instances_from_probabilities(prob, out=out, **options)[:]
    assert expected.max() > 10
    for plane, truth in zip(result, expected):
        assert_same_partition(plane, truth)
    np.testing.assert_array_equal(np.unique(result), np.unique(expected))  # 0..n: unique across the stack


def test_blockwise_refuses_what_it_cannot_do_and_warns_of_what_it_skips(small_blocks):
    prob = probabilities(np.stack([separate_objects(0)] * 2))
    with pytest.raises(UNetInputError, match="watershed"):
        instances_from_probabilities(prob, method="watershed")
    with pytest.raises(UNetInputError, match="link_planes"):
        instances_from_probabilities(prob, link_planes=True)
    with pytest.warns(UserWarning, match="fill_holes and restore_borders skipped"):
        instances_from_probabilities(prob)


# -- segment() -------------------------------------------------------------------------------------------------
class ProbabilityOracle(UNet):
    """A valid U-Net whose foreground probability is a smooth function of its (normalised) centre input."""

    def forward(self, x):
        h, w = self.output_shape(x.shape[-2:])
        centre = x[:, :1, self.halo : self.halo + h, self.halo : self.halo + w]  # about 0 to 1
        return torch.cat([torch.zeros_like(centre), 8 * (centre - 0.45)], dim=1)


def oracle() -> UNet:
    return ProbabilityOracle(in_channels=1, num_classes=2, base_channels=2, depth=2, task="instances").eval()


def stack_of_discs(n=3, shape=(90, 100)) -> np.ndarray:
    return np.stack([touching_discs(shape, n_objects=12, radius=(6, 12), seed=s)[0] for s in range(n)])


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"threshold": 0.3, "min_size": 15, "method": "watershed"},
        {"fill_holes": False, "restore_borders": False, "link_planes": True},
        {"threshold": 0.7, "link_planes": True},
    ],
)
def test_segment_equals_postprocessing_its_probabilities(options, device):
    image = stack_of_discs()
    model = oracle()
    expected = instances_from_probabilities(predict(model, image, tile_shape=(60, 60), device=device), **options)
    result = segment(model, image, tile_shape=(60, 60), device=device, **options)  # tiles of 20 x 20 pixels
    assert expected.max() > 20
    np.testing.assert_array_equal(result, expected)


def test_segment_blockwise_into_zarr_equals_postprocessing_its_probabilities(small_blocks, tmp_path, device):
    image = stack_of_discs(2)
    model = oracle()
    out = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=image.shape, chunks=(1, 16, 16), dtype="i4")
    with pytest.warns(UserWarning, match="block by block"):
        expected = instances_from_probabilities(predict(model, image, device=device), min_size=10)
        segment(model, image, out=out, device=device, tile_shape=(60, 60), min_size=10)
    np.testing.assert_array_equal(out[:], expected)


def test_segment_survives_running_out_of_memory_in_the_middle_of_a_plane(monkeypatch):
    image = stack_of_discs(2)
    model = oracle()
    expected = segment(model, image, tile_shape=(60, 60), batch_size=1)
    real_call = inference.TileRunner.__call__
    calls = []

    def second_batch_fails(self, batch, output):
        calls.append(batch.shape[0])
        if len(calls) == 2:  # the first batch of the plane is written, the second fails
            raise MemoryError("Unable to allocate 3.0 GiB for an array")
        return real_call(self, batch, output)

    monkeypatch.setattr(inference.TileRunner, "__call__", second_batch_fails)
    with pytest.warns(UserWarning, match="out of memory"):
        result = segment(model, image, tile_shape=(60, 60), batch_size=4)
    assert calls[:3] == [4, 4, 2]  # 5 x 5 tiles a plane: a batch of 4 written, then the plane again
    np.testing.assert_array_equal(result, expected)


def test_segment_refuses_bad_options_before_predicting():
    with pytest.raises(UNetInputError, match="method"):
        segment(oracle(), np.zeros((40, 40), np.float32), method="magic")


def test_planes_are_linked_only_to_their_neighbour():
    out = np.zeros((4, 20, 20), np.int32)
    labeller = instances.StackLabeller(out, "ZYX", link_planes=True)
    square = np.zeros((20, 20), np.float32)
    square[5:15, 5:15] = 1
    for z in (0, 2, 3):  # plane 1 never comes: 2 does not continue 0, 3 continues 2
        labeller.add({"Z": z}, square)
    assert (out[0, 10, 10], out[2, 10, 10], out[3, 10, 10]) == (1, 2, 2)


def test_cancelled_segment_keeps_the_planes_it_finished():
    from napari_seamless_unet.core.errors import Cancelled

    image = stack_of_discs(4)
    model = oracle()
    full = segment(model, image, tile_shape=(60, 60))
    seen = []
    with pytest.raises(Cancelled) as stop:
        segment(
            model,
            image,
            tile_shape=(60, 60),  # 5 x 5 tiles a plane
            progress=lambda done, total: seen.append(done),
            should_stop=lambda: seen[-1] >= 50,  # two planes of four
        )
    partial = stop.value.partial
    np.testing.assert_array_equal(partial[:2], full[:2])  # labelled as soon as predicted
    assert not partial[2:].any()


def test_labels_from_classes_label_like_segment():
    from napari_seamless_unet.core.postprocess import labels_from_classes

    _, truth = touching_discs((100, 120), n_objects=15, seed=4)
    classes = (separate_touching(truth) > 0).astype(np.uint8)
    expected = instances_from_probabilities(probabilities(classes), min_size=9)
    np.testing.assert_array_equal(labels_from_classes(classes, "instances", min_size=9), expected)
    plain = labels_from_classes(classes, "instances", restore_borders=False, fill_holes=False)
    assert_same_partition(plain, ndimage.label(classes)[0])
    np.testing.assert_array_equal(labels_from_classes(classes, "semantic"), classes)
