"""`dlc serve` under load: throughput and p50/p99 latency with and without dynamic batching, vs direct runs.

    python examples/benchmark_serve.py --requests 3000 --out serve-benchmark.json

The digits CNN (dynamic batch, ONNX Runtime backend) is served twice — batching off, then
`--max-batch 32 --max-delay-ms 2` — and hit by 1, 8 and 32 concurrent tritonclient clients
(binary tensors, one sample per request). "direct" runs the same model in this process
from the same number of threads, with no HTTP in between. Client and server share this
machine's cores, as they would on a single-box deployment.
"""

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dlc.exporters.pytorch import ExportConfig, export_checkpoint
from dlc.fileio import write_json
from dlc.runtime.backends import open_session
from dlc.runtime.bench import machine_info
from dlc.training import checkpoint


def summarize(latencies: list[float], seconds: float) -> dict:
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "throughput_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def load(call, concurrency: int, requests: int) -> dict:
    """`requests` calls of `call()` spread over `concurrency` threads; per-call latency and throughput."""
    per_thread = max(1, requests // concurrency)

    def worker(_):
        times = []
        for _ in range(per_thread):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return times

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = [t for batch in pool.map(worker, range(concurrency)) for t in batch]
    return summarize(latencies, time.perf_counter() - start)


def serve(model: Path, *args: str):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "serve", str(model), "--port", str(port), "--max-queue",
                             "1024", *args], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("dlc serve did not start")


def client_call(url: str, x: np.ndarray):
    import tritonclient.http as triton

    clients = {}

    def call():
        import threading

        client = clients.setdefault(threading.get_ident(), triton.InferenceServerClient(url))
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        client.infer("model", [tensor])
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--out", type=Path, default=Path("serve-benchmark.json"))
    args = parser.parse_args()
    work = args.out.parent / f".{args.out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.onnx"
    export_checkpoint(checkpoint.untrained("cnn"), model, ExportConfig(dynamic_batch=True, force=True))
    levels = [int(c) for c in args.concurrency.split(",")]
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)

    session = open_session("onnxruntime", model)
    results = {"direct": {c: load(lambda: session.run({"input": x}), c, args.requests) for c in levels}}
    for label, flags in (("serve", ("--max-batch", "1")), ("serve_batching", ("--max-batch", "32",
                                                                                "--max-delay-ms", "2"))):
        proc, url = serve(model, *flags)
        try:
            results[label] = {c: load(client_call(url, x), c, args.requests) for c in levels}
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    ratios = {f"serve_vs_direct_at_{c}": round(results["serve"][c]["throughput_per_s"]
                                               / results["direct"][c]["throughput_per_s"], 3) for c in levels}
    ratios |= {f"batching_gain_at_{c}": round(results["serve_batching"][c]["throughput_per_s"]
                                              / results["serve"][c]["throughput_per_s"], 3) for c in levels}
    write_json(args.out, {"machine": machine_info(), "model": "digits CNN (ONNX Runtime, dynamic batch)",
                          "requests_per_level": args.requests, "results": results, "ratios": ratios})
    print(json.dumps({"ratios": ratios, **{k: {c: v[c]["throughput_per_s"] for c in levels}
                                           for k, v in results.items()}}, indent=1))


if __name__ == "__main__":
    main()
