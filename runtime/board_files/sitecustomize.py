"""Loaded by every Python process of the emulated board (it sits first on PYTHONPATH).

TVM's RPC server starts its workers by re-executing `sys.executable`. Under
qemu-user that is the arm64 interpreter, which the x86-64 kernel cannot execute
without binfmt_misc; so every process points `sys.executable` (and multiprocessing's
interpreter) at the host-side wrapper script that runs it through qemu again.
It also registers `dlc.device_info`, which `dlc deploy` asks before uploading anything.
"""

import json
import os
import platform
import sys

_wrapper = os.environ.get("DLC_BOARD_PYTHON")
if _wrapper:
    sys.executable = _wrapper
    import multiprocessing

    multiprocessing.set_executable(_wrapper)

    import tvm_ffi

    def _device_info() -> str:
        return json.dumps({"arch": platform.machine(), "board": os.environ.get("DLC_BOARD", ""),
                           "cpu": os.environ.get("DLC_BOARD_CPU", ""), "emulated": True,
                           "python": platform.python_version()})

    tvm_ffi.register_global_func("dlc.device_info", _device_info, override=True)
