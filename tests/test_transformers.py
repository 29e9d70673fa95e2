"""Architectures no one here wrote: the transformers library's classes, built from small configs with random
weights (nothing downloaded), exported the way torch does by default (dynamo, weights in NAME.onnx.data), and taken
through every dlc command as the exporter wrote them."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_dlc

transformers = pytest.importorskip("transformers", reason="transformers is a test dependency: pip install -e '.[dev]'")


def _bert():
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64, num_labels=3)
    return (transformers.BertForSequenceClassification(config),
            {"input_ids": torch.randint(0, 100, (1, 16)), "attention_mask": torch.ones(1, 16, dtype=torch.int64)})


def _gpt2():
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64, use_cache=False)
    return transformers.GPT2LMHeadModel(config), {"input_ids": torch.randint(0, 100, (1, 16))}


def _vit():
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, num_labels=5)
    return transformers.ViTForImageClassification(config), {"pixel_values": torch.randn(1, 3, 32, 32)}


@pytest.mark.parametrize("build", [_bert, _gpt2, _vit], ids=["bert-classifier", "gpt2-lm", "vit-classifier"])
def test_a_transformers_model_exported_by_torch_goes_through_every_command(build, tmp_path):
    torch.manual_seed(0)
    model, inputs = build()
    onnx_path = tmp_path / "model.onnx"
    torch.onnx.export(model.eval(), tuple(inputs.values()), str(onnx_path), input_names=list(inputs), dynamo=True,
                      external_data=True, verbose=False)
    assert (tmp_path / "model.onnx.data").is_file()  # the weights are beside it, as torch writes them
    for command in (["inspect", onnx_path], ["doctor", onnx_path],
                    ["optimize", onnx_path, "-o", tmp_path / "opt.onnx"]):
        result = run_dlc(*command)
        assert result.returncode == 0, (command, result.stderr)
    compiled = run_dlc("compile", onnx_path, "-o", tmp_path / "model.dlc")
    assert compiled.returncode == 0 and "verified against ONNX Runtime" in compiled.stdout, compiled.stderr
    report = tmp_path / "bench.json"
    bench = run_dlc("bench", tmp_path / "model.dlc", "--backends", "tvm,onnxruntime", "--runs", "5", "--report", report)
    assert bench.returncode == 0, bench.stderr
    tvm = next(r for r in json.loads(report.read_text())["results"] if r["backend"] == "tvm")
    assert tvm["max_abs_diff"] < 1e-4


def test_dlc_serve_reads_an_onnx_file_whose_weights_are_beside_it(tmp_path):
    import numpy as np
    import tritonclient.http as triton

    from dlc.runtime.backends import open_session
    from tests.runtime.test_serve import serving

    torch.manual_seed(0)
    model, inputs = _vit()
    onnx_path = tmp_path / "vit.onnx"
    torch.onnx.export(model.eval(), tuple(inputs.values()), str(onnx_path), input_names=list(inputs), dynamo=True,
                      external_data=True, verbose=False)
    pixels = inputs["pixel_values"].numpy()
    want = open_session("onnxruntime", onnx_path).run({"pixel_values": pixels})
    with serving(onnx_path) as url:
        tensor = triton.InferInput("pixel_values", list(pixels.shape), "FP32")
        tensor.set_data_from_numpy(pixels)
        answer = triton.InferenceServerClient(url).infer("vit", [tensor])
    name = next(iter(want))
    np.testing.assert_allclose(answer.as_numpy(name), want[name], atol=1e-6)
