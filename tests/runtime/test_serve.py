"""`dlc serve` driven with the real tritonclient over loopback: protocol, versions, bad input, load."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from dlc.runtime.backends import open_session


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(target, *args, env=None):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "serve", str(target), "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dlc serve exited: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/live", timeout=1)
            return proc, f"127.0.0.1:{port}"
        except OSError:  # refused, or accepted by the listening socket before uvicorn answers: not yet
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("dlc serve did not come up in 120 s")


@contextlib.contextmanager
def serving(target, *args, env=None):
    """`dlc serve TARGET ARGS` for the block; yields its HOST:PORT and stops it after."""
    proc, url = _start(target, *args, env=env)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifact, onnx_model):
    """A repository: cnn v1 (TVM artifact), cnn v2 (ONNX, dynamic batch), and a corrupt model."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(artifact, repo / "cnn" / "1" / "model.dlc")
    (repo / "cnn" / "2").mkdir()
    shutil.copyfile(onnx_model, repo / "cnn" / "2" / "model.onnx")
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"this is not onnx")
    proc, url = _start(repo, "--max-body-mb", "0.05", "--max-queue", "256")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _request(url: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://{url}{path}", data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _infer(client, x, model="cnn", version=""):
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    result = client.infer(model, [tensor], model_version=version,
                          outputs=[triton.InferRequestedOutput("logits", binary_data=False)])
    return result.as_numpy("logits")


def test_health_metadata_and_results_equal_running_the_model_directly(server, artifact, onnx_model):
    client = triton.InferenceServerClient(server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("cnn")
    meta = client.get_model_metadata("cnn")
    assert meta["versions"] == ["1", "2"] and meta["platform"] == "onnxruntime"  # the newest version
    assert client.get_model_metadata("cnn", "1")["inputs"] == [{"name": "input", "datatype": "FP32",
                                                                "shape": [1, 1, 8, 8]}]
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    want_tvm = open_session("tvm", artifact).run({"input": x})["logits"]
    np.testing.assert_array_equal(_infer(client, x, version="1"), want_tvm)
    batch = np.random.default_rng(1).random((3, 1, 8, 8), dtype=np.float32)
    want_ort = open_session("onnxruntime", onnx_model).run({"input": batch})["logits"]
    np.testing.assert_allclose(_infer(client, batch, version="2"), want_ort, rtol=1e-6)


def test_binary_tensor_extension_is_what_tritonclient_sends_by_default(server, artifact):
    client = triton.InferenceServerClient(server)
    x = np.random.default_rng(5).random((1, 1, 8, 8), dtype=np.float32)
    tensor = triton.InferInput("input", [1, 1, 8, 8], "FP32")
    tensor.set_data_from_numpy(x)  # binary_data=True
    result = client.infer("cnn", [tensor], model_version="1")  # outputs come back binary too
    np.testing.assert_array_equal(result.as_numpy("logits"), open_session("tvm", artifact).run({"input": x})["logits"])


def test_a_corrupt_model_reports_why_while_the_others_serve(server):
    client = triton.InferenceServerClient(server)
    assert not client.is_model_ready("broken")
    status, body = _request(server, "/v2/models/broken")
    assert status == 503 and "failed to load" in body["error"] and "not an ONNX model" in body["error"]
    assert _infer(client, np.zeros((1, 1, 8, 8), np.float32)).shape == (1, 10)


def _good(server) -> None:
    body = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}]}
    status, answer = _request(server, "/v2/models/cnn/versions/1/infer", json.dumps(body).encode())
    assert status == 200 and answer["outputs"][0]["shape"] == [1, 10]


BAD = {
    "wrong shape": ({"inputs": [{"name": "input", "shape": [1, 8, 8], "datatype": "FP32", "data": [0] * 64}]},
                    400, "has shape [1, 8, 8]"),
    "wrong dtype": ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "INT64", "data": [0] * 64}]},
                    400, "is INT64"),
    "missing input": ({"inputs": []}, 400, "missing input 'input'"),
    "extra input": ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 64},
                                {"name": "mask", "shape": [1], "datatype": "FP32", "data": [1]}]},
                    400, "unexpected input 'mask'"),
    "too few values": ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 9}]},
                       400, "9 values"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_requests_get_the_protocol_error_and_the_server_keeps_serving(server, case):
    body, status, fragment = BAD[case]
    got, answer = _request(server, "/v2/models/cnn/versions/1/infer", json.dumps(body).encode())
    assert got == status and fragment in answer["error"], answer
    _good(server)


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/v2/models/nope/infer", b"{}", 404, "model 'nope' is not in this repository"),
    ("/v2/models/cnn/versions/7/infer", b"{}", 404, "version '7'"),
    ("/v2/models/cnn/versions/1/infer", b"{not json", 400, "not valid JSON"),
    ("/v2/models/cnn/versions/1/infer", b"[" + b"0," * 40000 + b"0]", 413, "limit"),
    ("/v2/models/..%2F..%2Fetc%2Fpasswd/ready", None, 404, "passwd"),  # never a path on disk
])
def test_unknown_models_malformed_and_oversize_bodies(server, path, body, status, fragment):
    got, answer = _request(server, path, body)
    assert got == status and fragment in answer["error"], answer
    _good(server)


def test_load_of_8_clients_by_200_requests_is_all_correct(server, artifact):
    x = np.random.default_rng(2).random((1, 1, 8, 8), dtype=np.float32)
    want = open_session("tvm", artifact).run({"input": x})["logits"]

    def client_run(_):
        client = triton.InferenceServerClient(server)
        return [np.array_equal(_infer(client, x, version="1"), want) for _ in range(200)]

    with ThreadPoolExecutor(8) as pool:
        results = [ok for batch in pool.map(client_run, range(8)) for ok in batch]
    assert len(results) == 1600 and all(results)
    assert triton.InferenceServerClient(server).is_server_ready()
    metrics = urllib.request.urlopen(f"http://{server}/metrics", timeout=10).read().decode()
    assert 'dlc_requests_total{model="cnn",status="200"}' in metrics
    assert 'dlc_request_seconds_bucket{le="0.001",model="cnn",stage="compute"}' in metrics


def test_bearer_token_from_the_environment(onnx_model):
    import os

    proc, url = _start(onnx_model, env={**os.environ, "DLC_SERVE_TOKEN": "s3cret"})
    try:
        status, body = _request(url, "/v2/models/cnn/ready")
        assert status == 401 and "bearer token" in body["error"]
        client = triton.InferenceServerClient(url)
        with pytest.raises(InferenceServerException):
            client.get_model_metadata("cnn")
        authed = client.get_model_metadata("cnn", headers={"Authorization": "Bearer s3cret"})
        assert authed["platform"] == "onnxruntime"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_on_a_missing_path_is_a_one_line_error(tmp_path):
    from tests.conftest import assert_one_line_error, run_dlc

    assert_one_line_error(run_dlc("serve", tmp_path / "nothing"), "does not exist")


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory, runner, onnx_model):
    """Dynamic batching on: the dynamic-batch ONNX CNN, and the CNN compiled by TVM for batch 8."""
    from tests.conftest import invoke

    repo = tmp_path_factory.mktemp("batching")
    (repo / "ort" / "1").mkdir(parents=True)
    shutil.copyfile(onnx_model, repo / "ort" / "1" / "model.onnx")
    (repo / "tvm8" / "1").mkdir(parents=True)
    result = invoke(runner, "compile", onnx_model, "-o", repo / "tvm8" / "1" / "model.dlc", "--shape", "input=8,1,8,8")
    assert result.exit_code == 0, result.output
    proc, url = _start(repo, "--max-batch", "16", "--max-delay-ms", "5")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_dynamic_batching_merges_concurrent_requests_and_splits_the_answers(batching_server, onnx_model):
    reference = open_session("onnxruntime", onnx_model)
    rng = np.random.default_rng(3)
    samples = [rng.random((1, 1, 8, 8), dtype=np.float32) for _ in range(64)]

    def one(args):
        model, x = args
        return np.allclose(_infer(triton.InferenceServerClient(batching_server), x, model=model),
                           reference.run({"input": x})["logits"], atol=1e-4)

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, [(m, x) for m in ("ort", "tvm8") for x in samples]))
    metrics = urllib.request.urlopen(f"http://{batching_server}/metrics", timeout=10).read().decode()
    for model in ("ort", "tvm8"):
        runs = float(_metric(metrics, f'dlc_batch_size_count{{model="{model}"}}'))
        samples_run = float(_metric(metrics, f'dlc_batch_size_sum{{model="{model}"}}'))
        assert samples_run == 64 and runs < 64, (model, runs)  # some runs carried several requests


def test_a_fixed_batch_model_takes_smaller_batches_padded(batching_server, onnx_model):
    client = triton.InferenceServerClient(batching_server)
    meta = client.get_model_metadata("tvm8")
    assert meta["max_batch_size"] == 8 and meta["inputs"][0]["shape"] == [-1, 1, 8, 8]
    x = np.random.default_rng(4).random((3, 1, 8, 8), dtype=np.float32)
    got = _infer(client, x, model="tvm8")
    np.testing.assert_allclose(got, open_session("onnxruntime", onnx_model).run({"input": x})["logits"], atol=1e-4)
    status, body = _request(batching_server, "/v2/models/tvm8/infer", json.dumps({"inputs": [
        {"name": "input", "shape": [9, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 576}]}).encode())
    assert status == 400 and "maximum of 8" in body["error"]


def _metric(text: str, name: str) -> str:
    return next(line.split()[-1] for line in text.splitlines() if line.startswith(name))


def test_sigterm_lets_the_requests_in_flight_finish(onnx_model):
    """SIGTERM arrives while a request is half sent: the server waits for the rest, answers, then exits.

    The request is held in flight by sending its body in two halves, the signal in between,
    so no timing on this machine decides whether it is in flight (the server's own
    in-flight gauge says it is).
    """
    import http.client

    proc, url = _start(onnx_model)
    x = np.random.default_rng(6).random((64, 1, 8, 8), dtype=np.float32)
    body = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()
    host, port = url.split(":")
    connection = socket.create_connection((host, int(port)), timeout=60)
    head = (f"POST /v2/models/cnn/infer HTTP/1.1\r\nHost: {url}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    connection.sendall(head + body[:len(body) // 2])
    deadline = time.monotonic() + 30
    while float(_metric(_metrics(url), 'dlc_requests_in_flight{model="cnn"}')) < 1:
        assert time.monotonic() < deadline, "the half-sent request never showed as in flight"
        time.sleep(0.05)
    proc.terminate()
    time.sleep(1.0)
    assert proc.poll() is None  # still there: a request is in flight
    connection.sendall(body[len(body) // 2:])
    response = http.client.HTTPResponse(connection)
    response.begin()
    answer = json.loads(response.read())
    assert response.status == 200 and answer["outputs"][0]["shape"] == [64, 10]
    expected = open_session("onnxruntime", onnx_model).run({"input": x})["logits"]
    np.testing.assert_allclose(np.array(answer["outputs"][0]["data"]).reshape(64, 10), expected, atol=1e-4)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says SIGTERM
    assert proc.wait(timeout=60) in (0, -15)
    with pytest.raises((InferenceServerException, ConnectionError)):  # and then it is gone
        triton.InferenceServerClient(url).is_server_live()


def _metrics(url: str) -> str:
    return urllib.request.urlopen(f"http://{url}/metrics", timeout=10).read().decode()


def test_batcher_survives_a_client_that_hung_up():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor as Pool

    from dlc.runtime.serving.batching import Batcher

    def slow_double(feed):
        time.sleep(0.05)
        return {"y": feed["x"] * 2}

    async def scenario():
        batcher = Batcher(slow_double, 8, 0.0, None, Pool(1), lambda stage, value: None)
        gone = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2))}))
        await asyncio.sleep(0.01)
        gone.cancel()  # what Starlette does when the client disconnects mid-request
        later = await asyncio.wait_for(batcher.submit({"x": np.full((1, 2), 3.0)}), 10)  # not a hang
        return later["y"]

    np.testing.assert_array_equal(asyncio.run(scenario()), [[6.0, 6.0]])


def test_a_full_queue_answers_503_with_retry_after_and_recovers(onnx_model):
    proc, url = _start(onnx_model, "--max-queue", "1")
    body = json.dumps({"inputs": [{"name": "input", "shape": [2048, 1, 8, 8], "datatype": "FP32",
                                   "data": [0.5] * 2048 * 64}]}).encode()

    def post(_):
        req = urllib.request.Request(f"http://{url}/v2/models/cnn/infer", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, None
        except urllib.error.HTTPError as e:
            return e.code, (e.headers.get("Retry-After"), json.loads(e.read())["error"])

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(8)))
        busy = [detail for status, detail in answers if status == 503]
        assert busy and all(after == "1" and "requests queued (limit 1)" in error for after, error in busy)
        assert all(status in (200, 503) for status, _ in answers) and (200, None) in answers
        assert post(0) == (200, None)  # served again once the queue drains
    finally:
        proc.terminate()
        proc.wait(timeout=30)
