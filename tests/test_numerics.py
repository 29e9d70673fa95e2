"""The one output comparison: max abs diff against atol + rtol * max|reference|, per output."""

import numpy as np
import pytest

from dlc.errors import NumericMismatchError
from dlc.numerics import Tolerance, compare, require_close


def test_the_limit_scales_with_the_largest_reference_value():
    want = {"y": np.array([100.0, 0.001], dtype=np.float32)}
    got = {"y": np.array([100.005, 0.006], dtype=np.float32)}  # 0.005 off: fine at scale 100, not elementwise
    result = compare(got, want, Tolerance(atol=1e-4, rtol=1e-4))
    assert result.ok and result.limit == pytest.approx(1e-4 + 1e-2) and result.max_abs_diff == pytest.approx(5e-3, 1e-3)


def test_every_failing_output_is_named_and_nan_never_agrees():
    want = {"a": np.zeros(3), "b": np.ones(3), "c": np.ones(2)}
    got = {"a": np.full(3, 0.5), "b": np.ones(3), "c": np.array([1.0, np.nan])}
    result = compare(got, want, Tolerance(1e-3, 0.0), "at batch 3")
    assert not result.ok and len(result.failures) == 2
    assert result.failures[0].startswith("'a' at batch 3 by 0.5") and result.failures[1].startswith("'c' at batch 3")
    with pytest.raises(NumericMismatchError, match=r"TVM and ONNX Runtime differ beyond atol=0.001, rtol=0: 'a'.*'c'"):
        require_close(got, want, Tolerance(1e-3, 0.0), "TVM and ONNX Runtime", "loosen --atol")


def test_equal_outputs_agree_exactly():
    x = {"y": np.arange(6, dtype=np.float32).reshape(2, 3)}
    assert require_close(x, x, Tolerance(0.0, 0.0), "a", "b") == 0.0
