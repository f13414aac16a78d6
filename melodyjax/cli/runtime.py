"""Process set-up for the mains: a memory allocator that does not re-fault.

XLA:CPU allocates a step's large temporary buffers afresh at every call. With
glibc's default malloc each of them is a new mmap, so every training step
touches about 35,000 new pages (136 MiB of page faults, 50-60 ms of system
CPU time per step of the reference model at B = 64, T = 64). Two remedies, both
set before the process starts, hence the re-exec:

* tcmalloc (Debian's `libtcmalloc-minimal4`), preloaded: keeps freed memory
  for reuse; about 0-1,300 page faults per step.
* glibc's `glibc.malloc.hugetlb=1` tunable (glibc 2.35+, transparent huge
  pages in `madvise` or `always` mode): the same mmaps, but in 2 MiB pages;
  about 550 page faults per step.

`MELODYJAX_MALLOC=system .venv/bin/python benchmarks/bench_train.py` against
the default measures the difference (BENCHMARKS.md). No JAX import here:
this runs before anything else in a main.
"""

from __future__ import annotations

import ctypes.util
import os
import platform
import sys

# MELODYJAX_MALLOC: auto (default) | tcmalloc | hugepages | system.
ENV_CHOICE = "MELODYJAX_MALLOC"
# Set in the re-executed process, so that it does not re-execute again.
ENV_ACTIVE = "MELODYJAX_MALLOC_ACTIVE"
CHOICES = ("auto", "tcmalloc", "hugepages", "system")

_TCMALLOC_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu")
_TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")


def find_tcmalloc() -> str | None:
  """Path (or soname) of an installed tcmalloc, or None."""
  for folder in _TCMALLOC_DIRS:
    for name in _TCMALLOC_NAMES:
      path = os.path.join(folder, name)
      if os.path.exists(path):
        return path
  for name in ("tcmalloc_minimal", "tcmalloc"):
    found = ctypes.util.find_library(name)
    if found:
      return found
  return None


def hugepages_available() -> bool:
  """glibc 2.35+ and transparent huge pages not switched off."""
  libc, version = platform.libc_ver()
  if libc != "glibc" or not version:
    return False
  try:
    major, minor = (int(part) for part in version.split(".")[:2])
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
      mode = f.read()
  except (OSError, ValueError):
    return False
  return (major, minor) >= (2, 35) and "[never]" not in mode


def allocator_env(
  environ: dict[str, str], choice: str
) -> tuple[str, dict[str, str]] | None:
  """(name, environment) for the allocator to run under, or None to keep.

  Args:
    environ: the current environment.
    choice: one of `CHOICES`.

  Returns:
    None when the process should stay as it is (allocator 'system', one
    already chosen, or nothing better available).
  """
  if choice not in CHOICES:
    raise ValueError(
      f"{ENV_CHOICE}={choice!r}: expected one of {', '.join(CHOICES)}"
    )
  if choice == "system" or environ.get(ENV_ACTIVE):
    return None
  env = dict(environ)
  if choice in ("auto", "tcmalloc"):
    path = find_tcmalloc()
    if path is not None:
      preload = env.get("LD_PRELOAD", "")
      if "tcmalloc" not in preload:
        env["LD_PRELOAD"] = f"{path} {preload}".strip()
      env[ENV_ACTIVE] = "tcmalloc"
      return "tcmalloc", env
    if choice == "tcmalloc":
      raise ValueError(
        f"{ENV_CHOICE}=tcmalloc but no tcmalloc is installed "
        "(Debian: apt-get install libtcmalloc-minimal4)"
      )
  if hugepages_available():
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
      env["GLIBC_TUNABLES"] = ":".join(
        part for part in (tunables, "glibc.malloc.hugetlb=1") if part
      )
    env[ENV_ACTIVE] = "hugepages"
    return "hugepages", env
  return None


def reexec_with_fast_malloc() -> None:
  """Re-executes this process under a better allocator, once, if it can.

  Call first thing in a `__main__` block, before JAX is imported. Keeps the
  command line (`sys.orig_argv`, so `python -m ...` works), the process id
  and every environment variable; only adds `LD_PRELOAD` or
  `GLIBC_TUNABLES`. `MELODYJAX_MALLOC=system` opts out.
  """
  if sys.platform != "linux":
    return
  choice = os.environ.get(ENV_CHOICE, "auto")
  try:
    chosen = allocator_env(dict(os.environ), choice)
  except ValueError as e:
    print(f"{os.path.basename(sys.argv[0])}: error: {e}", file=sys.stderr)
    sys.exit(2)
  if chosen is None:
    return
  _, env = chosen
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, env)


def active_allocator() -> str:
  """The allocator this process runs under, for start-up logs."""
  return os.environ.get(ENV_ACTIVE) or "system (glibc malloc)"
