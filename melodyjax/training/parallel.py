"""Device mesh and shardings: one `data` axis over every device."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def create_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named 'data' over `devices` (default: all, every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.array(devices), (DATA_AXIS,))


def local_devices(mesh: Mesh) -> list[jax.Device]:
  """The mesh's devices that belong to this process."""
  return [
    d for d in mesh.devices.flat if d.process_index == jax.process_index()
  ]


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over devices."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def to_global(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Process-local batch rows to global arrays sharded on 'data'."""
  sharding = batch_sharding(mesh)
  return {
    name: jax.make_array_from_process_local_data(sharding, value)
    for name, value in local.items()
  }


def to_pmap(local: dict[str, np.ndarray], num_devices: int):
  """Process-local batch rows to [local devices, rows / device, ...]."""
  return {
    name: value.reshape(
      num_devices, value.shape[0] // num_devices, *value.shape[1:]
    )
    for name, value in local.items()
  }


def describe_launch(batch_size: int, dtype: str, mode: str) -> str:
  """What this process sees: processes, devices, batch split, dtype.

  Printed first by `train_main.py`, so that a wrong launch (one GPU where
  eight were meant, processes that did not join) shows in the first lines.
  """
  devices = jax.devices()
  local = jax.local_devices()
  kinds = sorted({d.device_kind for d in devices})
  per_device = batch_size / len(devices)
  per_device = int(per_device) if per_device.is_integer() else per_device
  return (
    f"process {jax.process_index()} of {jax.process_count()}: "
    f"{len(local)} local of {len(devices)} global devices "
    f"({jax.default_backend()}: {', '.join(kinds)}; local "
    f"{', '.join(str(d.id) for d in local)})\n"
    f"global batch {batch_size} = {per_device} per device x {len(devices)} "
    f"device{'s' if len(devices) > 1 else ''} "
    f"({batch_size // jax.process_count()} per process); compute "
    f"dtype {dtype}; parallel {mode}"
  )
