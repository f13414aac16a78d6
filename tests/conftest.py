"""Test set-up: CPU only, four host devices, slow tests opt-in."""

import os

# Before JAX is imported anywhere: several CPU devices so that multi-device
# code paths are always exercised.
os.environ["JAX_PLATFORMS"] = "cpu"
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (
    _flags + " --xla_force_host_platform_device_count=4"
  ).strip()

import pytest  # noqa: E402


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
