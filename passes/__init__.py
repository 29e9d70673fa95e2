"""ONNX → ONNX graph passes: the infrastructure, cleanup and fusion passes, and pipelines.

    from dlc.passes import level, run_passes, Verifier
    model, records = run_passes(ir_model, level(2), Verifier(ir_model, sample_inputs))

Every pass is registered by name (`REGISTRY`), so `dlc optimize --passes a,b` and
`from_names(["a", "b"])` build the same list.
"""

from dlc.passes import cleanup, float16, fusion, lowering, prune, quantize  # noqa: F401 - importing registers the passes
from dlc.passes.infra import (
           REGISTRY,
           Pass,
           PassResult,
           RewritePass,
           Tolerance,
           count_nodes,
           register,
)
from dlc.passes.pipeline import (
           LEVELS,
           PassRecord,
           Verifier,
           from_names,
           level,
           run_passes,
)

__all__ = ["LEVELS", "REGISTRY", "Pass", "PassRecord", "PassResult", "RewritePass", "Tolerance", "Verifier",
           "count_nodes", "from_names", "level", "register", "run_passes"]
