"""Test set-up: CPU only, four host devices, a persistent compilation cache,
slow tests opt-in."""

import os

# Before JAX is imported anywhere: several CPU devices so that multi-device
# code paths are always exercised.
os.environ["JAX_PLATFORMS"] = "cpu"
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (
    _flags + " --xla_force_host_platform_device_count=4"
  ).strip()

# XLA's compiled programs are kept on disk and shared by every test and every
# command a test starts (the variables reach the subprocesses): most tests
# compile the same tiny model. `MELODYJAX_TEST_XLA_CACHE` moves the folder
# ('' turns the cache off).
_cache = os.environ.get("MELODYJAX_TEST_XLA_CACHE")
if _cache is None:
  from melodyjax import files

  _cache = files.cache_dir("xla_tests")
if _cache:
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _cache)
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

from tests.helpers import tiny_config, train, write_tunes  # noqa: E402


def pytest_addoption(parser):
  parser.addoption(
    "--runslow",
    action="store_true",
    default=False,
    help="also run tests marked slow or accelerator",
  )


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow"):
    return
  skip = pytest.mark.skip(reason="slow: run with --runslow")
  for item in items:
    if "slow" in item.keywords or "accelerator" in item.keywords:
      item.add_marker(skip)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A tiny run trained for 10 steps (one per test module that uses it)."""
  root = tmp_path_factory.mktemp("sample")
  midi_dir = root / "midi"
  write_tunes(midi_dir, 40, 9, name="t{}.mid")
  config = tiny_config(midi_dir, root / "data")
  config.train.num_train_steps = 10
  train(config, root / "run")
  return root / "run"
