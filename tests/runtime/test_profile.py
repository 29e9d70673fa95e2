"""Per-kernel times of an artifact, from the Relax VM's instrumentation."""

from dlc.artifact import Artifact
from dlc.runtime.profile import kernel_times


def test_every_kernel_that_computes_is_timed(artifact):
    kernels = Artifact.load(artifact).manifest["schedules"]["per_kernel"]
    times = kernel_times(artifact, runs=5, warmup=1)
    # VM built-ins (allocation, shape checks) are not kernels; a transpose the VM turned into a reshape is not called
    assert set(times) <= {k["name"] for k in kernels}
    assert {k["name"] for k in kernels if k["flops"] > 0} <= set(times)
    assert all(t["ms"] > 0 and t["calls"] == 1 for t in times.values())  # this CNN calls each kernel once
