"""Property-based: thousands of generated requests to `dlc serve`, over real HTTP, never get a 500 nor hang.

Bodies are drawn near the protocol (tensors whose names, shapes, datatypes, data and
parameters are each right, wrong in type, or absurd in size) and far from it (any JSON,
any bytes); afterwards the server still answers a good request correctly.
"""

from __future__ import annotations

import http.client
import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlc.runtime.serving.protocol import DATATYPES
from tests.runtime.test_serve import _start

names = st.one_of(st.sampled_from(["input", "x", ""]), st.text(max_size=4), st.integers(), st.none(),
                  st.lists(st.just("input"), max_size=2))
datatypes = st.one_of(st.sampled_from(sorted(DATATYPES)), st.text(max_size=4), st.none(), st.integers(),
                      st.lists(st.just("FP32"), max_size=2))
dims = st.one_of(st.integers(-2, 9), st.booleans(), st.integers(10**6, 10**30), st.floats(allow_nan=False),
                 st.text(max_size=2))
shapes = st.one_of(st.lists(dims, max_size=5), st.sampled_from([[1, 1, 8, 8], [2, 1, 8, 8], [0, 1, 8, 8]]),
                   st.none(), st.text(max_size=3))
scalars = st.one_of(st.floats(width=32), st.integers(-10**40, 10**40), st.booleans(), st.none(), st.text(max_size=2))
data = st.one_of(st.lists(scalars, max_size=130), st.lists(st.lists(scalars, max_size=8), max_size=16), scalars,
                 st.dictionaries(st.text(max_size=2), scalars, max_size=2),
                 st.lists(st.floats(width=32), min_size=64, max_size=64))
parameters = st.one_of(st.none(), st.text(max_size=2), st.lists(st.integers(), max_size=2),
                       st.dictionaries(st.sampled_from(["binary_data_size", "binary_data", "binary_data_output"]),
                                       st.one_of(st.integers(-5, 10**20), st.booleans(), st.text(max_size=2)),
                                       max_size=2))
tensors = st.fixed_dictionaries({}, optional={"name": names, "shape": shapes, "datatype": datatypes, "data": data,
                                              "parameters": parameters})
outputs = st.one_of(st.lists(st.fixed_dictionaries({}, optional={"name": names, "parameters": parameters}),
                             max_size=2), st.text(max_size=2))
near = st.fixed_dictionaries({"inputs": st.lists(tensors, max_size=3)},
                             optional={"outputs": outputs, "parameters": parameters, "id": st.one_of(st.text(max_size=3),
                                                                                                     st.integers())})
anything = st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=4),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                    max_size=3), max_leaves=12)
requests = st.one_of(
    st.tuples(st.one_of(near, anything).map(lambda body: json.dumps(body).encode()), st.none()),
    st.tuples(st.binary(max_size=300), st.one_of(st.none(), st.integers(-3, 400).map(str),  # a header is latin-1
                                                 st.text(st.characters(max_codepoint=255, exclude_categories=("Cc",)),
                                                         max_size=4))),
)
paths = st.sampled_from(["/v2/models/onnx/infer", "/v2/models/tvm/infer", "/v2/models/onnx/versions/1/infer",
                         "/v2/models/nothing/infer"])


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifact, onnx_model):
    repo = tmp_path_factory.mktemp("properties")
    (repo / "onnx" / "1").mkdir(parents=True)
    shutil.copyfile(onnx_model, repo / "onnx" / "1" / "model.onnx")
    shutil.copytree(artifact, repo / "tvm" / "1" / "model.dlc")
    proc, url = _start(repo, "--max-batch", "4", "--max-body-mb", "1")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _post(url: str, path: str, body: bytes, header_length: str | None) -> tuple[int, bytes]:
    host, port = url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)  # a hang fails the test
    headers = {"Content-Type": "application/json"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow, HealthCheck.data_too_large])
@given(path=paths, request=requests)
def test_generated_requests_never_get_a_500(server, path, request):
    status, raw = _post(server, path, *request)
    assert status < 500, (status, raw[:300])
    if status != 200:
        assert "error" in json.loads(raw)


def test_the_server_answers_correctly_after_all_of_them(server, onnx_model):
    from dlc.runtime.backends import open_session

    x = np.random.default_rng(9).random((2, 1, 8, 8), dtype=np.float32)
    body = {"inputs": [{"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": x.ravel().tolist()}]}
    status, raw = _post(server, "/v2/models/onnx/infer", json.dumps(body).encode(), None)
    assert status == 200
    out = json.loads(raw)["outputs"][0]
    want = open_session("onnxruntime", onnx_model).run({"input": x})["logits"]
    np.testing.assert_allclose(np.array(out["data"]).reshape(out["shape"]), want, atol=1e-5)
