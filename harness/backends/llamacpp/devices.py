"""The offload devices (GPUs) this llama.cpp build sees, with their memory: for the preflight and the record.

llama-cpp-python binds llama.h only; ggml's device API is reached with ctypes on the same libggml.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

CPU_DEVICE, _GPU, _IGPU = 0, 1, 2  # enum ggml_backend_dev_type (ggml-backend.h)


@lru_cache(maxsize=1)
def ggml_lib() -> ctypes.CDLL:
    """libggml of the installed llama-cpp-python (already loaded by libllama: the same handle)."""
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    names = ("libggml.so", "libggml.dylib", "ggml.dll")
    lib = ctypes.CDLL(str(next((lib_dir / n for n in names if (lib_dir / n).exists()), lib_dir / names[0])))
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    lib.ggml_backend_reg_by_name.restype, lib.ggml_backend_reg_by_name.argtypes = vp, [ctypes.c_char_p]
    lib.ggml_backend_reg_get_proc_address.restype = vp
    lib.ggml_backend_reg_get_proc_address.argtypes = [vp, ctypes.c_char_p]
    lib.ggml_backend_register.restype, lib.ggml_backend_register.argtypes = None, [vp]
    lib.ggml_backend_reg_dev_count.restype, lib.ggml_backend_reg_dev_count.argtypes = sz, [vp]
    lib.ggml_backend_reg_dev_get.restype, lib.ggml_backend_reg_dev_get.argtypes = vp, [vp, sz]
    lib.ggml_backend_dev_name.restype, lib.ggml_backend_dev_name.argtypes = ctypes.c_char_p, [vp]
    lib.ggml_backend_dev_description.restype, lib.ggml_backend_dev_description.argtypes = (
        ctypes.c_char_p,
        [vp],
    )
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_memory.argtypes = [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)]
    lib.ggml_backend_dev_by_type.restype, lib.ggml_backend_dev_by_type.argtypes = vp, [ctypes.c_int]
    lib.ggml_backend_dev_count.restype = sz
    lib.ggml_backend_dev_get.restype, lib.ggml_backend_dev_get.argtypes = vp, [sz]
    lib.ggml_backend_dev_type.restype, lib.ggml_backend_dev_type.argtypes = ctypes.c_int, [vp]
    lib.ggml_backend_dev_backend_reg.restype, lib.ggml_backend_dev_backend_reg.argtypes = vp, [vp]
    lib.ggml_backend_reg_name.restype, lib.ggml_backend_reg_name.argtypes = ctypes.c_char_p, [vp]
    return lib


def local_gpus() -> list[dict]:
    """This machine's GPUs (and iGPUs) as llama.cpp sees them, with free and total memory in bytes.

    RPC workers are GPU-type devices too once registered; they are left out here (see harness.backends.llamacpp.rpc).
    Where llama.cpp is not loaded yet (the harness's own process: the preflight, the plan), the answer comes from
    a fresh interpreter, so that this process never loads llama.cpp's GPU backend beside torch and pyarrow
    (issue #28: the engine runs in its own process); a build with no GPU backend library answers at once.
    """
    if "llama_cpp" not in sys.modules:
        return _gpus_from_child()
    return _gpus_here()


# ggml's backend libraries that are not GPUs: the CPU backend, the base library, RPC (harness.backends.llamacpp.rpc).
_NOT_GPU_LIBS = ("libggml.", "libggml-base.", "libggml-cpu", "libggml-rpc.", "libllama.", "libmtmd.")


@lru_cache(maxsize=1)
def _gpus_from_child() -> list[dict]:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return []
    lib_dir = Path(spec.origin).parent / "lib"
    if (
        sys.platform.startswith("linux")
        and lib_dir.is_dir()
        and all(p.name.startswith(_NOT_GPU_LIBS) for p in lib_dir.iterdir() if ".so" in p.name)
    ):
        return []  # a CPU build (and RPC): no GPU backend to ask
    done = subprocess.run(
        [sys.executable, "-m", "harness.backends.llamacpp.devices"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"listing llama.cpp's GPUs failed: {done.stderr[-1000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _gpus_here() -> list[dict]:
    import llama_cpp

    llama_cpp.llama_backend_init()
    lib = ggml_lib()
    out = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        if lib.ggml_backend_dev_type(dev) not in (_GPU, _IGPU):
            continue
        if lib.ggml_backend_reg_name(lib.ggml_backend_dev_backend_reg(dev)) == b"RPC":
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append(
            {
                "device": lib.ggml_backend_dev_name(dev).decode(),
                "description": (lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
                "free_bytes": free.value,
                "total_bytes": total.value,
            }
        )
    return out


if __name__ == "__main__":  # local_gpus() for a process that keeps llama.cpp out (see there)
    print(json.dumps(_gpus_here()))
