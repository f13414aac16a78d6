"""Building and loading the compiled LSTM kernels (XLA FFI, CPU).

  kernel   our own fused LSTM layer (csrc/lstm_fused.cc): one small GEMM
           per step, the input projection folded in, with the four gates'
           elementwise work in its epilogue; AVX2 + FMA and AVX-512
           register tiles, chosen at run time (`kernel_isa`); the second
           thread a task on XLA's own pool. Needs only a C++ compiler.
  onednn   oneDNN's vanilla LSTM primitive (csrc/lstm_onednn.cc), forward
           (training, keeping its workspace) and backward, one call per
           layer; needs oneDNN 3.x headers and library (PyPI:
           onednn-devel-cpu-gomp, onednn-cpu-gomp).

The sources are compiled on first use with g++ into a cache folder
(`$MELODYJAX_KERNEL_CACHE`, default `files.cache_dir("kernels")/<hash>/`;
the hash covers the sources, the compiler's version, the flags, the jax,
jaxlib and oneDNN versions and the CPU's flags, since the build tunes for
this CPU), under a file lock, written to a temporary name and
renamed. `unavailable_reason(impl)` gives None when the kernel loads, else
a one-line reason (no compiler, no oneDNN, a compile or load error, no
AVX2), so that the model falls back to its XLA implementation and says why.
`python -m melodyjax.model.kernels` builds both and prints what happened.

Environment: MELODYJAX_CXX (compiler, default g++), MELODYJAX_KERNEL_CACHE,
MELODYJAX_ONEDNN_ROOT (prefix holding include/oneapi and lib/libdnnl.so;
default this Python's prefix), MELODYJAX_LSTM_ISA (auto, avx2 or avx512).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import jax
import jaxlib

from melodyjax import files

IMPLS = ("kernel", "onednn")
_CSRC = pathlib.Path(__file__).resolve().parent / "csrc"
_SOURCES = {"kernel": "lstm_fused.cc", "onednn": "lstm_onednn.cc"}
_NEEDS_ONEDNN = {"onednn"}
# Files the sources #include (their text is in the cache hash too).
_INCLUDES = {"kernel": ("lstm_fused_layer.cc",)}
_TARGETS = {
  "kernel": (
    "MjxFusedLstmFwd",
    "MjxFusedLstmFwdInfer",
    "MjxFusedLstmBwd",
    "MjxLstmLayerFwd",
    "MjxLstmLayerFwdInfer",
    "MjxLstmLayerBwd",
  ),
  "onednn": ("MjxOnednnLstmFwd", "MjxOnednnLstmBwd"),
}
_lock = threading.Lock()
_loaded: dict[tuple, tuple[ctypes.CDLL | None, str | None]] = {}
_registered: set[str] = set()


def _one_line(text: str, limit: int = 300) -> str:
  """The first informative line of a compiler's or loader's message."""
  lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
  errors = [ln for ln in lines if "error" in ln.lower()]
  line = (errors or lines or ["(no message)"])[0]
  return line if len(line) <= limit else line[: limit - 3] + "..."


def _cpu_flags() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          return " ".join(sorted(line.split(":", 1)[1].split()))
  except OSError:
    pass
  import platform

  return platform.processor() or platform.machine()


def _cache_root() -> pathlib.Path:
  root = os.environ.get("MELODYJAX_KERNEL_CACHE")
  if root:
    return pathlib.Path(root)
  return pathlib.Path(files.cache_dir("kernels"))


def _onednn_prefix() -> tuple[pathlib.Path | None, str | None]:
  """(prefix with include/oneapi/dnnl and lib/libdnnl.so, None) or a reason."""
  prefix = pathlib.Path(os.environ.get("MELODYJAX_ONEDNN_ROOT", sys.prefix))
  if not (prefix / "include" / "oneapi" / "dnnl" / "dnnl.hpp").exists():
    return None, (
      f"oneDNN headers not found under {prefix}/include (pip install "
      "onednn-devel-cpu-gomp==2023.2.0, or set MELODYJAX_ONEDNN_ROOT)"
    )
  if not list((prefix / "lib").glob("libdnnl.so*")):
    return None, f"libdnnl.so not found under {prefix}/lib"
  return prefix, None


def _onednn_version(prefix: pathlib.Path) -> str:
  text = (prefix / "include" / "oneapi" / "dnnl" / "dnnl_version.h").read_text()
  parts = re.findall(r"#define DNNL_VERSION_\w+\s+(\S+)", text)
  return ".".join(parts)


def _compile_command(impl: str, cxx: str, out: str) -> tuple[list[str], str]:
  """(g++ command, extra text that the cache hash must cover)."""
  # The kernel runs on any x86-64 with AVX2 + FMA; its AVX-512 code is
  # compiled under a target pragma and chosen at run time (cpuid).
  arch = (
    ["-march=x86-64-v3", "-mtune=native"]
    if impl == "kernel"
    else ["-march=native"]
  )
  flags = ["-O3", *arch, "-std=c++17", "-shared", "-fPIC"]
  flags += ["-isystem", jax.ffi.include_dir()]
  extra = ""
  libs = []
  if impl in _NEEDS_ONEDNN:
    prefix, reason = _onednn_prefix()
    if reason:
      raise _Unavailable(reason)
    flags += ["-isystem", str(prefix / "include")]
    libs = [f"-L{prefix / 'lib'}", "-ldnnl", f"-Wl,-rpath,{prefix / 'lib'}"]
    extra = f"onednn {_onednn_version(prefix)} at {prefix}"
  src = str(_CSRC / _SOURCES[impl])
  return [cxx, *flags, src, "-o", out, *libs], extra


class _Unavailable(Exception):
  """A kernel cannot be built or loaded here; the message says why."""


def build(impl: str, cxx: str | None = None) -> pathlib.Path:
  """Compiles `impl` into the cache (once) and returns the library's path.

  Raises _Unavailable with a one-line reason.
  """
  cxx = cxx or os.environ.get("MELODYJAX_CXX", "g++")
  if impl == "kernel":
    flags = set(_cpu_flags().split())
    if not {"avx2", "fma"} <= flags:
      raise _Unavailable("the fused LSTM kernel needs a CPU with AVX2 and FMA")
  exe = shutil.which(cxx)
  if exe is None:
    raise _Unavailable(f"C++ compiler {cxx!r} not found")
  try:
    version = subprocess.run(
      [exe, "--version"], capture_output=True, text=True, timeout=60
    ).stdout.splitlines()[0]
  except (OSError, subprocess.SubprocessError, IndexError) as e:
    raise _Unavailable(f"{cxx} --version failed: {_one_line(e)}") from e
  cmd, extra = _compile_command(impl, exe, "OUT")
  source = b"".join(
    (_CSRC / name).read_bytes()
    for name in (_SOURCES[impl], *_INCLUDES.get(impl, ()))
  )
  key = hashlib.sha256()
  for part in (
    source,
    version,
    " ".join(cmd),
    extra,
    jax.__version__,
    jaxlib.__version__,
    _cpu_flags(),
  ):
    key.update(part if isinstance(part, bytes) else part.encode())
    key.update(b"\0")
  folder = _cache_root() / key.hexdigest()[:20]
  lib = folder / f"libmjx_lstm_{impl}.so"
  if lib.exists():
    return lib
  try:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building
      if lib.exists():
        return lib
      fd, tmp = tempfile.mkstemp(dir=folder, suffix=".so.tmp")
      os.close(fd)
      try:
        cmd, _ = _compile_command(impl, exe, tmp)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
          raise _Unavailable(
            f"compiling {_SOURCES[impl]} failed: "
            f"{_one_line(done.stderr or done.stdout)}"
          )
        (folder / "command.txt").write_text(" ".join(cmd) + "\n")
        os.chmod(tmp, 0o755)
        os.replace(tmp, lib)
      finally:
        if os.path.exists(tmp):
          os.unlink(tmp)
  except OSError as e:
    raise _Unavailable(f"kernel cache {folder}: {_one_line(e)}") from e
  except subprocess.SubprocessError as e:
    raise _Unavailable(f"compiling {_SOURCES[impl]}: {_one_line(e)}") from e
  return lib


def load(impl: str, cxx: str | None = None):
  """(ctypes library, None) with its FFI targets registered, or (None, why).

  The outcome is remembered for the process, per (impl, compiler).
  """
  if impl not in IMPLS:
    return None, f"unknown LSTM kernel {impl!r} (have {IMPLS})"
  key = (impl, cxx or os.environ.get("MELODYJAX_CXX", "g++"))
  with _lock:
    if key in _loaded:
      return _loaded[key]
    try:
      path = build(impl, cxx)
      if impl == "onednn":
        # GNU OpenMP teams spin in their barriers; beside XLA's own threads
        # (or another process) that made oneDNN's LSTM 10x slower. Read by
        # libgomp when it loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
      try:
        lib = ctypes.CDLL(str(path))
        for name in _TARGETS[impl]:
          if name not in _registered:  # the first library loaded serves
            jax.ffi.register_ffi_target(
              name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu"
            )
            _registered.add(name)
      except (OSError, AttributeError) as e:
        raise _Unavailable(f"loading {path.name}: {_one_line(e)}") from e
      if impl == "kernel":
        lib.mjx_fused_isa.restype = ctypes.c_int
        lib.mjx_fused_isa.argtypes = [ctypes.c_int64]
      if impl == "onednn":
        fn = lib.mjx_onednn_workspace_bytes
        fn.restype = ctypes.c_int64
        fn.argtypes = [ctypes.c_int64] * 4
      result = (lib, None)
    except _Unavailable as e:
      result = (None, str(e))
    _loaded[key] = result
    return result


def unavailable_reason(impl: str, cxx: str | None = None) -> str | None:
  """None if `impl` builds and loads here, else a one-line reason."""
  return load(impl, cxx)[1]


def require(impl: str) -> ctypes.CDLL:
  """The loaded library of `impl`; RuntimeError if it is unavailable."""
  lib, reason = load(impl)
  if lib is None:
    raise RuntimeError(f"LSTM kernel {impl!r} unavailable: {reason}")
  return lib


ISAS = {"auto": 0, "avx2": 1, "avx512": 2}
_ISA_NAMES = {1: "AVX2 + FMA", 2: "AVX-512"}


def requested_isa() -> int:
  """MELODYJAX_LSTM_ISA (auto, avx2 or avx512) as the kernel's attribute."""
  name = os.environ.get("MELODYJAX_LSTM_ISA", "auto")
  if name not in ISAS:
    raise ValueError(
      f"MELODYJAX_LSTM_ISA={name!r}: expected one of {list(ISAS)}"
    )
  return ISAS[name]


def kernel_isa() -> str | None:
  """The instruction set the kernel runs here ('AVX-512' or 'AVX2 + FMA',
  MELODYJAX_LSTM_ISA respected), or None if it is unavailable."""
  lib, _ = load("kernel")
  if lib is None:
    return None
  return _ISA_NAMES[lib.mjx_fused_isa(requested_isa())]


@functools.cache
def cpu_description() -> str:
  """The CPU's model name and its SIMD flags that matter here."""
  name = "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          name = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  flags = set(_cpu_flags().split())
  simd = [
    f
    for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
    if f in flags
  ]
  return f"{name} ({os.cpu_count()} CPUs; {' '.join(simd)})"
