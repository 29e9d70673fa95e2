"""TVM's own RPC server, started inside the emulated board (arm64 Python under qemu).

Run by `dlc device emulate`; it needs nothing but the aarch64 apache-tvm wheel. Spawn
mode ("no fork") because a forked child hangs under qemu-user.
"""

import argparse
import logging


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9190)
    parser.add_argument("--key", default="")
    parser.add_argument("--tracker", default=None, help="HOST:PORT of a TVM RPC tracker to register with")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s board: %(message)s")

    from tvm import rpc

    tracker = None
    if args.tracker:
        host, port = args.tracker.rsplit(":", 1)
        tracker = (host, int(port))
    server = rpc.Server(host=args.host, port=args.port, port_end=args.port + 1, key=args.key,
                        tracker_addr=tracker, no_fork=True)
    print(f"DLC-BOARD-READY {server.port}", flush=True)
    server.proc.join()


if __name__ == "__main__":
    main()
