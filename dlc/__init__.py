"""dlc: train in PyTorch, export to ONNX, compile with Apache TVM, measure, serve, deploy.

The Python API (`dlc.export`, `dlc.optimize`, `dlc.quantize`, `dlc.prune`, `dlc.compile`, `dlc.load`, `dlc.bench`; see
dlc.api) is imported on first use, so `import dlc` stays as fast as `dlc --help`.
"""

from dlc.version import __version__

API = ("export", "optimize", "quantize", "prune", "compile", "load", "bench")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:
        from dlc import api

        return getattr(api, name)
    raise AttributeError(f"module 'dlc' has no attribute {name!r}")
