"""`dlc serve` under load and faults: many clients mixing good, malformed and slow requests.

    python examples/serve_faults.py --clients 200 --seconds 60 --out serve-faults.json

Serves the digits CNN twice, batched: as ONNX (ONNX Runtime, dynamic batch) and as a TVM
artifact compiled for batch 8, with `--max-batch 8 --read-timeout 2`. Each client loops
for `--seconds`: 70 % good requests (1-3 random samples, answers checked against ONNX
Runtime run here), 20 % malformed ones (each must get a 4xx), 10 % slow ones that send
half a body and stall (each must get 408). The JSON reports what was sent and answered,
whether every good answer was right, the server's resident memory at the start and end,
and whether its /metrics counts agree with what the clients saw.
"""

import argparse
import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from dlc.fileio import write_json
from dlc.runtime.bench import machine_info

MALFORMED = [
    {"inputs": [{"name": "input", "shape": [1, 8, 8], "datatype": "FP32", "data": [0] * 64}]},
    {"inputs": [{"name": ["input"], "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 64}]},
    {"inputs": [{"name": "input", "shape": [True, 1, 8, 8], "datatype": "FP32", "data": [0] * 64}]},
    {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "INT64", "data": [0] * 64}]},
    {"inputs": [{"name": "input", "shape": [0, 10**30], "datatype": "FP32", "data": []}]},
    {"inputs": [], "parameters": [1]},
    {"inputs": [{"name": "input", "shape": [9, 1, 8, 8], "datatype": "FP32", "data": [0] * 576}]},  # over 8
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("serve-faults.json"))
    args = parser.parse_args()
    work = args.out.parent / f".{args.out.stem}-work"
    repo = build_repository(work)
    from dlc.runtime.backends import open_session

    reference = open_session("onnxruntime", repo / "onnx" / "1" / "model.onnx")
    proc, url = start(repo)
    try:
        rss_start = rss_mb(proc.pid)
        before = metrics(url)
        counts, problems = run_clients(url, reference, args.clients, args.seconds)
        time.sleep(1.0)
        after = metrics(url)
        rss_end = rss_mb(proc.pid)
        alive = post(url, "/v2/models/tvm/infer", good_body(np.zeros((1, 1, 8, 8), np.float32)))[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    served = {model: {status: after.get((model, status), 0) - before.get((model, status), 0)
                      for status in {s for (_, s) in after}} for model in ("onnx", "tvm")}
    seen = {model: {status: n for (m, status), n in counts["statuses"].items() if m == model}
            for model in ("onnx", "tvm")}
    report = {"machine": machine_info(), "clients": args.clients, "seconds": args.seconds,
              "sent": counts["sent"], "client_statuses": {m: dict(sorted(v.items())) for m, v in seen.items()},
              "metrics_statuses": {m: {k: v for k, v in sorted(d.items()) if v} for m, d in served.items()},
              "metrics_agree": all(served[m].get(s, 0) == n for m in seen for s, n in seen[m].items()),
              "wrong_answers": problems["wrong"], "unexpected": problems["unexpected"][:20],
              "hung": problems["hung"], "answered_after": alive,
              "rss_mb": {"start": rss_start, "end": rss_end}}
    write_json(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))


def build_repository(work: Path) -> Path:
    from dlc.compiler.build import CompileConfig, compile_model
    from dlc.exporters.pytorch import ExportConfig, export_checkpoint
    from dlc.training import TrainConfig, train

    repo = work / "repo"
    onnx_path = repo / "onnx" / "1" / "model.onnx"
    if not onnx_path.exists():
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        export_checkpoint(train(TrainConfig(model="cnn", epochs=2)).checkpoint, onnx_path,
                          ExportConfig(dynamic_batch=True))
    artifact = repo / "tvm" / "1" / "model.dlc"
    if not artifact.exists():
        compile_model(onnx_path, artifact, CompileConfig(shapes={"input": [8, 1, 8, 8]}))
    return repo


def start(repo: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "serve", str(repo), "--port", str(port), "--max-batch", "8",
                             "--read-timeout", "2", "--max-queue", "1024"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    url = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if post(url, "/v2/health/live", None)[0] == 200:
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("dlc serve did not come up")


def post(url: str, path: str, body: bytes | None, timeout: float = 60.0) -> tuple[int, bytes]:
    host, port = url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("POST" if body is not None else "GET", path, body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def good_body(x: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()


def slow_request(url: str, model: str) -> int:
    """Half a body, then nothing: the server must answer 408 on its own."""
    host, port = url.split(":")
    body = good_body(np.zeros((1, 1, 8, 8), np.float32))
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:len(body) // 2])
        answer = sock.recv(4096).decode(errors="replace")
    return int(answer.split()[1]) if answer.startswith("HTTP/1.1") else 0


def run_clients(url: str, reference, clients: int, seconds: float):
    lock = threading.Lock()
    counts = {"sent": {"good": 0, "malformed": 0, "slow": 0}, "statuses": {}}
    problems = {"wrong": 0, "unexpected": [], "hung": 0}
    stop = time.monotonic() + seconds

    def note(kind: str, model: str, status: int, expected: bool, detail: str = "") -> None:
        with lock:
            counts["sent"][kind] += 1
            counts["statuses"][(model, status)] = counts["statuses"].get((model, status), 0) + 1
            if not expected:
                problems["unexpected"].append(f"{kind} to {model}: {status} {detail[:200]}")

    def client(seed: int) -> None:
        rng, pick = np.random.default_rng(seed), random.Random(seed)
        while time.monotonic() < stop:
            model, roll = pick.choice(("onnx", "tvm")), pick.random()
            try:
                if roll < 0.7:
                    x = rng.random((pick.randint(1, 3), 1, 8, 8), dtype=np.float32)
                    status, raw = post(url, f"/v2/models/{model}/infer", good_body(x))
                    ok = status == 200
                    if ok:
                        out = json.loads(raw)["outputs"][0]
                        got = np.array(out["data"], np.float32).reshape(out["shape"])
                        if not np.allclose(got, reference.run({"input": x})["logits"], atol=1e-4):
                            with lock:
                                problems["wrong"] += 1
                    note("good", model, status, ok, raw.decode(errors="replace"))
                elif roll < 0.9:
                    status, raw = post(url, f"/v2/models/{model}/infer", json.dumps(pick.choice(MALFORMED)).encode())
                    note("malformed", model, status, 400 <= status < 500, raw.decode(errors="replace"))
                else:
                    status = slow_request(url, model)
                    note("slow", model, status, status == 408)
            except (TimeoutError, socket.timeout):
                with lock:
                    problems["hung"] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts, problems


def metrics(url: str) -> dict[tuple[str, int], float]:
    """dlc_requests_total{model, status} from /metrics."""
    _, raw = post(url, "/metrics", None)
    found = {}
    for line in raw.decode().splitlines():
        if line.startswith("dlc_requests_total{"):
            labels, value = line[len("dlc_requests_total{"):].split("} ")
            fields = dict(part.split("=") for part in labels.split(","))
            found[(fields["model"].strip('"'), int(fields["status"].strip('"')))] = float(value)
    return found


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / (1 << 20), 1)


if __name__ == "__main__":
    main()
