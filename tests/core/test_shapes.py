import itertools

import pytest

from napari_seamless_unet.core import shapes
from napari_seamless_unet.core.errors import InvalidShapeError


def test_paper_numbers():
    assert shapes.halo(4) == 92
    assert shapes.output_shape((572, 572)) == (388, 388)
    assert shapes.input_size_for_output(388) == 572


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_valid_sizes_are_spaced_by_two_to_the_depth(depth):
    valid = [n for n in range(1, 400) if shapes.is_valid_input_size(n, depth)]
    assert valid[0] == shapes.min_input_size(depth)
    assert all(b - a == 2**depth for a, b in itertools.pairwise(valid))
    for n in valid:
        assert shapes.output_size(n, depth) == n - 2 * shapes.halo(depth)


def test_nearest_valid_size():
    assert shapes.valid_input_size(570) == 572
    assert shapes.valid_input_size(580, mode="down") == 572
    assert shapes.valid_input_size(580, mode="up") == 588
    assert shapes.valid_input_size(3) == shapes.min_input_size(4)
    assert shapes.valid_input_shape((570, 600)) == (572, 604)


def test_error_names_the_nearest_valid_sizes():
    with pytest.raises(InvalidShapeError) as err:
        shapes.check_input_shape((570, 572), 4)
    message = str(err.value)
    assert "570" in message and "odd" in message
    assert "(572, 572)" in message


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_depth(bad):
    with pytest.raises(InvalidShapeError):
        shapes.halo(bad)
