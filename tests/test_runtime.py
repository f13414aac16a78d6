"""The allocator re-exec of the mains."""

import os
import subprocess
import sys
import textwrap

import pytest

from melodyjax.cli import runtime


def test_system_and_already_active_keep_the_process():
  assert runtime.allocator_env({}, "system") is None
  assert runtime.allocator_env({runtime.ENV_ACTIVE: "tcmalloc"}, "auto") is None


def test_unknown_choice_names_the_variable():
  with pytest.raises(ValueError, match="MELODYJAX_MALLOC='tc'"):
    runtime.allocator_env({}, "tc")


def test_tcmalloc_is_prepended_to_ld_preload(monkeypatch):
  monkeypatch.setattr(runtime, "find_tcmalloc", lambda: "/lib/libtc.so")
  name, env = runtime.allocator_env({"LD_PRELOAD": "/other.so"}, "auto")
  assert name == "tcmalloc"
  assert env["LD_PRELOAD"] == "/lib/libtc.so /other.so"
  assert env[runtime.ENV_ACTIVE] == "tcmalloc"


def test_without_tcmalloc_auto_falls_back_and_tcmalloc_refuses(monkeypatch):
  monkeypatch.setattr(runtime, "find_tcmalloc", lambda: None)
  monkeypatch.setattr(runtime, "hugepages_available", lambda: True)
  name, env = runtime.allocator_env(
    {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "auto"
  )
  assert name == "hugepages"
  assert env["GLIBC_TUNABLES"] == (
    "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
  )
  assert "LD_PRELOAD" not in env
  with pytest.raises(ValueError, match="libtcmalloc-minimal4"):
    runtime.allocator_env({}, "tcmalloc")
  monkeypatch.setattr(runtime, "hugepages_available", lambda: False)
  assert runtime.allocator_env({}, "auto") is None


SCRIPT = textwrap.dedent(
  """
  import os, sys
  print("start", flush=True)
  from melodyjax.cli import runtime
  runtime.reexec_with_fast_malloc()
  print("args", sys.argv[1:], os.getpid(), runtime.active_allocator())
  """
)


@pytest.mark.skipif(sys.platform != "linux", reason="re-exec is Linux only")
def test_reexec_runs_once_with_the_same_arguments(tmp_path):
  script = tmp_path / "main.py"
  script.write_text(SCRIPT)
  env = {k: v for k, v in os.environ.items() if not k.startswith("MELODYJAX")}
  out = subprocess.run(
    [sys.executable, str(script), "--a=1", "b c"],
    env=env,
    capture_output=True,
    text=True,
    check=True,
  ).stdout.splitlines()
  expected = None
  if runtime.find_tcmalloc():
    expected = "tcmalloc"
  elif runtime.hugepages_available():
    expected = "hugepages"
  if expected is None:
    assert out[0] == "start" and len(out) == 2
    return
  # Started twice (the re-exec), the rest ran once, arguments intact.
  assert out[:2] == ["start", "start"] and len(out) == 3
  assert out[2].startswith("args ['--a=1', 'b c']")
  assert out[2].endswith(expected)

  env[runtime.ENV_CHOICE] = "system"
  out = subprocess.run(
    [sys.executable, str(script)],
    env=env,
    capture_output=True,
    text=True,
    check=True,
  ).stdout.splitlines()
  assert out[0] == "start" and out[1].endswith("system (glibc malloc)")


@pytest.mark.skipif(sys.platform != "linux", reason="re-exec is Linux only")
def test_bad_choice_is_a_one_line_error(tmp_path):
  script = tmp_path / "main.py"
  script.write_text(SCRIPT)
  env = dict(os.environ, MELODYJAX_MALLOC="fast")
  env.pop(runtime.ENV_ACTIVE, None)
  result = subprocess.run(
    [sys.executable, str(script)], env=env, capture_output=True, text=True
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
    "main.py: error: MELODYJAX_MALLOC='fast': expected one of auto, "
    "tcmalloc, hugepages, system"
  ]
