"""Serving models that a careless batcher gets wrong, and models that must not stop the server (issue 13).

Each case is followed by a good request that gets the right answer.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest

from tests.conftest import invoke
from tests.runtime.test_serve import _request, _start, serving

OPSET = '<ir_version: 8, opset_import: ["" : 17]>'
MODELS = {
    # no batch axis: the output is reduced over axis 0
    "sum0": "g (float[N,4] x) => (float[4] y) { axes = Constant<value = int64[1] {0}>()  "
            "y = ReduceSum<keepdims = 0>(x, axes) }",
    "total": "g (float[N,4] x) => (float y) { y = ReduceSum<keepdims = 0>(x) }",  # a scalar output
    "fixed3": "g (float[3,4] x) => (float[3,4] y) { y = Relu(x) }",  # a fixed first dimension is no batch
    "seq": "g (float[N,T] x) => (float[N,T] y) { y = Relu(x) }",  # batched, but only requests of one T
    "reshape": "g (float[N,4] x, int64[2] shape) => (float[?,?] y) { y = Reshape(x, shape) }",  # can fail at run
}


def _infer(url: str, model: str, x: np.ndarray, **extra: np.ndarray) -> tuple[int, dict]:
    tensors = [{"name": name, "shape": list(a.shape), "datatype": "INT64" if a.dtype == np.int64 else "FP32",
                "data": a.ravel().tolist()} for name, a in {"x": x, **extra}.items()]
    return _request(url, f"/v2/models/{model}/infer", json.dumps({"inputs": tensors}).encode())


def _output(answer: dict) -> np.ndarray:
    out = answer["outputs"][0]
    return np.array(out["data"], np.float32).reshape(out["shape"])


@pytest.fixture(scope="module")
def repo(tmp_path_factory, runner):
    root = tmp_path_factory.mktemp("faults")
    for name, graph in MODELS.items():
        (root / name / "1").mkdir(parents=True)
        onnx.save(onnx.parser.parse_model(OPSET + graph), root / name / "1" / "model.onnx")
    (root / "sum0_tvm" / "1").mkdir(parents=True)
    result = invoke(runner, "compile", root / "sum0" / "1" / "model.onnx", "-o", root / "sum0_tvm" / "1" / "model.dlc",
                    "--shape", "x=2,4")
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def server(repo):
    proc, url = _start(repo, "--max-batch", "8", "--max-delay-ms", "20")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_a_model_without_a_batch_axis_answers_whole_outputs_and_is_never_merged(server):
    rng = np.random.default_rng(0)
    xs = [rng.random((2, 4), dtype=np.float32) for _ in range(16)]
    with ThreadPoolExecutor(8) as pool:  # concurrent: a batcher would have merged them
        answers = list(pool.map(lambda x: _infer(server, "sum0", x), xs))
    for x, (status, answer) in zip(xs, answers):
        assert status == 200, answer
        np.testing.assert_allclose(_output(answer), x.sum(axis=0), rtol=1e-5)
    assert _request(server, "/v2/models/sum0")[1]["max_batch_size"] == 0


def test_its_compiled_artifact_answers_the_whole_output_too(server):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    status, answer = _infer(server, "sum0_tvm", x)
    assert status == 200 and answer["outputs"][0]["shape"] == [4], answer
    np.testing.assert_allclose(_output(answer), x.sum(axis=0), rtol=1e-5)
    status, answer = _infer(server, "sum0_tvm", x[:1])  # compiled for exactly 2 rows, not "up to 2"
    assert status == 400 and "has shape [1, 4]" in answer["error"]


def test_a_fixed_first_dimension_takes_exactly_that_shape(server):
    status, answer = _infer(server, "fixed3", np.ones((1, 4), np.float32))
    assert status == 400 and "the model takes [3, 4]" in answer["error"]
    x = np.array([[-1, 2, -3, 4]] * 3, np.float32)
    status, answer = _infer(server, "fixed3", x)
    assert status == 200 and _output(answer).tolist() == np.maximum(x, 0).tolist()


def test_a_scalar_output_answers_instead_of_hanging(server):
    x = np.ones((3, 4), np.float32)
    status, answer = _infer(server, "total", x)
    assert status == 200 and answer["outputs"][0]["shape"] == [] and answer["outputs"][0]["data"] == [12.0]


def test_requests_that_cannot_share_a_batch_run_separately(server):
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, t), dtype=np.float32) for t in (3, 5) * 8]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda x: _infer(server, "seq", x), xs))
    for x, (status, answer) in zip(xs, answers):
        assert status == 200, answer
        np.testing.assert_array_equal(_output(answer), np.maximum(x, 0))
    assert _request(server, "/v2/models/seq/ready")[0] == 200


def test_a_model_that_fails_on_one_request_answers_it_with_the_error_and_serves_the_next(server):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    status, answer = _infer(server, "reshape", x, shape=np.array([3, 3], np.int64))
    assert status == 500 and "failed on this request" in answer["error"], answer
    status, answer = _infer(server, "reshape", x, shape=np.array([4, 2], np.int64))
    assert status == 200 and _output(answer).tolist() == x.reshape(4, 2).tolist()
    assert _request(server, "/v2/health/ready")[0] == 200


def test_a_batcher_whose_loop_ends_fails_its_requests_and_takes_no_more():
    """Its loop cannot end on a model's error any more; should it end all the same, nothing waits forever."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor as Pool

    from dlc.runtime.serving.batching import Batcher, BatcherStopped

    def broken_expecting():
        raise RuntimeError("lost track of arriving requests")

    async def scenario():
        batcher = Batcher(lambda feed: feed, 8, 0.01, None, Pool(1), lambda stage, value: None,
                          expecting=broken_expecting)
        first = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2))}))
        second = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2))}))
        outcomes = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 10)
        with pytest.raises(BatcherStopped):
            await asyncio.wait_for(batcher.submit({"x": np.ones((1, 2))}), 10)
        return outcomes, batcher.failure

    outcomes, failure = asyncio.run(scenario())
    assert all(isinstance(o, BatcherStopped) for o in outcomes) and "lost track" in failure


def _bad_models(root, artifact, onnx_model):
    """A malformed manifest, external data outside the folder, a library that is not a Relax VM executable."""
    import hashlib
    import subprocess

    broken = root / "manifest" / "1" / "model.dlc"
    shutil.copytree(artifact, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["files"]
    (broken / "manifest.json").write_text(json.dumps(manifest))

    (root / "outside" / "1").mkdir(parents=True)
    model = onnx.load(onnx_model)
    weight = model.graph.initializer[0]
    (root / "secret.bin").write_bytes(bytes(weight.ByteSize()))  # it exists: only where it lies is wrong
    onnx.external_data_helper.set_external_data(weight, location="../../secret.bin")
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    onnx.save(model, root / "outside" / "1" / "model.onnx")

    foreign = root / "foreign" / "1" / "model.dlc"
    shutil.copytree(artifact, foreign)
    source = root / "foreign.c"
    source.write_text("int answer(void) { return 42; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(foreign / "model.so"), str(source)], check=True)
    manifest = json.loads((foreign / "manifest.json").read_text())
    manifest["files"]["library"]["sha256"] = hashlib.sha256((foreign / "model.so").read_bytes()).hexdigest()
    manifest["files"]["library"]["bytes"] = (foreign / "model.so").stat().st_size
    (foreign / "manifest.json").write_text(json.dumps(manifest))


def test_models_that_fail_to_load_in_any_way_leave_the_others_serving(tmp_path, artifact, onnx_model):
    (tmp_path / "good" / "1").mkdir(parents=True)
    shutil.copyfile(onnx_model, tmp_path / "good" / "1" / "model.onnx")
    _bad_models(tmp_path, artifact, onnx_model)
    with serving(tmp_path) as url:
        for name in ("manifest", "outside", "foreign"):
            status, body = _request(url, f"/v2/models/{name}")
            assert status == 503 and "failed to load" in body["error"], (name, body)
        body = {"inputs": [{"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 128}]}
        status, answer = _request(url, "/v2/models/good/infer", json.dumps(body).encode())
        assert status == 200 and answer["outputs"][0]["shape"] == [2, 10]


def test_a_port_in_use_is_one_error_line_and_no_serving_message(onnx_model):
    import socket

    from tests.conftest import assert_one_line_error, run_dlc

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = run_dlc("serve", onnx_model, "--port", str(taken.getsockname()[1]))
    assert_one_line_error(result, "cannot listen on 127.0.0.1:")
    assert "serving on" not in result.stdout
    assert_one_line_error(run_dlc("serve", onnx_model, "--port", "0"), "--port")


def test_a_body_that_never_arrives_gets_408_and_the_server_answers_others_meanwhile(repo):
    import socket
    import time

    with serving(repo, "--read-timeout", "3") as url:  # the good request meanwhile fits in 3 s
        host, port = url.split(":")
        slow = socket.create_connection((host, int(port)), timeout=30)
        slow.sendall(b"POST /v2/models/seq/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"inputs\": ")  # 11 of the 100 bytes it promised
        status, _ = _infer(url, "seq", np.ones((1, 3), np.float32))  # not held up by the slow one
        assert status == 200
        start = time.monotonic()
        answer = b""
        while chunk := slow.recv(4096):  # headers and body may come in two pieces; the server then closes
            answer += chunk
        answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408") and "--read-timeout" in answer, answer
        assert time.monotonic() - start < 10
        slow.close()
        assert _infer(url, "seq", np.ones((1, 3), np.float32))[0] == 200


def test_request_line_and_headers_that_trickle_in_get_408_and_the_connection_closes(repo):
    import socket
    import time

    with serving(repo, "--read-timeout", "1") as url:
        host, port = url.split(":")
        start = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            answer = b""
            for byte in b"POST /v2/models/seq/infer HTTP/1.1\r\nHost: x\r\n":  # a byte every 0.2 s, never done
                try:
                    slow.sendall(bytes([byte]))
                except OSError:  # closed by the server
                    break
                time.sleep(0.2)
                if time.monotonic() - start > 3:
                    break
            answer = slow.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408") and "--read-timeout" in answer, answer
        assert time.monotonic() - start < 5
        assert _infer(url, "seq", np.ones((1, 3), np.float32))[0] == 200


def test_json_the_decoder_chokes_on_is_a_400(server):
    deep = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    huge = b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [' + b"9" * 5000 + b', 1, 1]}]}'
    for body in (deep, huge):
        status, answer = _request(server, "/v2/models/seq/infer", body)
        assert status == 400 and "not valid JSON" in answer["error"], answer
    body = {"inputs": [{"name": "x", "shape": [0, 10**30], "datatype": "FP32", "data": []}]}
    status, answer = _request(server, "/v2/models/seq/infer", json.dumps(body).encode())
    assert status == 400, answer  # no values for a shape numpy cannot hold
    assert _infer(server, "seq", np.ones((1, 3), np.float32))[0] == 200


def test_outputs_json_cannot_carry_come_back_binary(tmp_path, onnx_model):
    """All-3e38 input makes the digits CNN's logits infinite or NaN: answered, not a 500."""
    with serving(onnx_model) as url:
        body = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [3e38] * 64}]}
        status, raw = _raw_post(url, "/v2/models/cnn/infer", json.dumps(body).encode())
        assert status == 200, raw
        header_length = int(raw.headers["Inference-Header-Content-Length"])
        header = json.loads(raw.body[:header_length])
        logits = np.frombuffer(raw.body[header_length:], np.float32)
        assert header["outputs"][0]["parameters"]["binary_data_size"] == 40 and not np.isfinite(logits).all()
        status, _ = _request(url, "/v2/models/cnn/infer", json.dumps(
            {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}]}).encode())
        assert status == 200


def test_a_non_ascii_token_works_and_a_wrong_one_is_401(onnx_model):
    import os
    import urllib.error
    import urllib.request

    with serving(onnx_model, "--token", "clé-secrète", env={**os.environ}) as url:
        def status(token: bytes) -> int:
            request = urllib.request.Request(f"http://{url}/v2/models/cnn")
            request.add_unredirected_header("Authorization", (b"Bearer " + token).decode("latin-1"))
            try:
                with urllib.request.urlopen(request, timeout=30) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert status("clé-secrète".encode()) == 200
        assert status("ñope".encode()) == 401 and status(b"\xff\xfe") == 401


class _Raw:
    def __init__(self, headers, body):
        self.headers, self.body = headers, body


def _raw_post(url: str, path: str, body: bytes):
    import http.client

    host, port = url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, _Raw(response.headers, response.read())
    finally:
        connection.close()


def test_connections_beyond_the_limit_get_503_and_the_server_recovers(repo):
    import socket
    import time

    with serving(repo, "--max-connections", "2", "--read-timeout", "30") as url:
        host, port = url.split(":")
        idle = [socket.create_connection((host, int(port)), timeout=30) for _ in range(2)]  # holding the two
        good = json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
        status, raw = _raw_post(url, "/v2/models/seq/infer", good.encode())
        assert status == 503, raw.body  # uvicorn's own answer
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 10
        while _infer(url, "seq", np.ones((1, 3), np.float32))[0] != 200:  # the slots free as they close
            assert time.monotonic() < deadline
