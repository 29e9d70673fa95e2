import numpy as np
import pytest

from dlc.errors import InputMismatchError
from dlc.specs import TensorSpec, check_inputs, random_inputs

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


def test_aligned_copies_only_when_needed():
    from dlc.specs import aligned, is_aligned

    base = np.zeros(64 * 4 + 16, np.uint8)
    offset = (-base.ctypes.data) % 64 + 16
    misaligned = base[offset:offset + 64].view(np.float32)
    assert not is_aligned(misaligned)
    fixed = aligned(misaligned)
    assert is_aligned(fixed) and np.array_equal(fixed, misaligned)
    assert aligned(fixed) is fixed


def test_tvm_session_gives_the_same_answer_for_aligned_and_misaligned_inputs(artifact):
    from dlc.runtime.backends import open_session
    from dlc.specs import aligned

    session = open_session("tvm", artifact)
    base = np.zeros(256 + 64 + 16, np.uint8)
    offset = (-base.ctypes.data) % 64 + 16  # 16-byte aligned only: must be copied, not shared
    x = base[offset:offset + 256].view(np.float32).reshape(1, 1, 8, 8)
    x[...] = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(session.run({"input": x})["logits"], session.run({"input": aligned(x)})["logits"])


def test_tvm_session_copies_a_read_only_input_rather_than_sharing_it(artifact):
    from dlc.runtime.backends import open_session
    from dlc.specs import aligned

    session = open_session("tvm", artifact)
    x = aligned(np.random.default_rng(1).random((1, 1, 8, 8), dtype=np.float32))
    want = session.run({"input": x})["logits"].copy()
    x.flags.writeable = False  # DLPack cannot hand TVM a read-only buffer: it must be copied
    np.testing.assert_array_equal(session.run({"input": x})["logits"], want)
