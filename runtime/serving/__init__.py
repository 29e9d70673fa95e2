"""Serving models over HTTP with the KServe v2 / Open Inference Protocol (what Triton speaks)."""
