import numpy as np
import pytest

from dlc.errors import InputMismatchError
from dlc.runtime.specs import TensorSpec, check_inputs, random_inputs

SPECS = [TensorSpec("image", ("batch", 3, 4, 4), "float32"), TensorSpec("mask", (2,), "int64")]


def test_symbolic_batch_accepts_any_size():
    feed = {"image": np.zeros((5, 3, 4, 4), np.float32), "mask": np.zeros(2, np.int64)}
    assert check_inputs(SPECS, feed).keys() == {"image", "mask"}


def test_every_problem_is_reported_at_once():
    feed = {"image": np.zeros((5, 3, 4), np.float64), "extra": np.zeros(1)}
    with pytest.raises(InputMismatchError) as e:
        check_inputs(SPECS, feed)
    message = str(e.value)
    for part in ("missing input 'mask'", "'extra' is not an input", "dtype float64, expected float32",
                 "shape [5, 3, 4], expected ['batch', 3, 4, 4]"):
        assert part in message


def test_random_inputs_are_reproducible_and_typed():
    a, b = random_inputs(SPECS, seed=1, batch=2), random_inputs(SPECS, seed=1, batch=2)
    assert a["image"].shape == (2, 3, 4, 4) and a["image"].dtype == np.float32
    assert a["mask"].dtype == np.int64
    np.testing.assert_array_equal(a["image"], b["image"])
