"""Devices: one `data` mesh axis, and the two ways to run a step over it.

A step body is written once with collectives over the named axis `data`.
`create('jit', mesh)` runs it as `jax.shard_map` under `jax.jit` with
NamedShardings (the default); `create('pmap', mesh)` runs the same body
under `jax.pmap`. The two differ only here: how a body is wrapped, how
batches and the state are put on the devices, and how results come back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from melodyjax.training import config as training_config

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


class Jit:
  """`jax.shard_map` under `jax.jit`: global arrays sharded on 'data'."""

  mode = "jit"

  def __init__(self, mesh: Mesh):
    self.mesh = mesh

  def wrap(
    self,
    body: Callable,
    batch_args: Sequence[Any],
    donate: bool = False,
    out_split: Any = False,
  ) -> Callable:
    """A jitted `body`; arguments marked True in `batch_args` (a bool, or
    a tree of bools that is a prefix of the argument's) are split over
    'data', the others replicated; likewise the outputs by `out_split`
    (default: all replicated)."""
    mapped = jax.shard_map(
      body,
      mesh=self.mesh,
      in_specs=tuple(_specs(split) for split in batch_args),
      out_specs=_specs(out_split),
      check_vma=False,
    )
    return jax.jit(mapped, donate_argnums=0 if donate else ())

  def put_batch(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Process-local batch rows to global arrays sharded on 'data'."""
    sharding = batch_sharding(self.mesh)
    return {
      name: jax.make_array_from_process_local_data(sharding, value)
      for name, value in local.items()
    }

  def put_state(self, state: Any) -> Any:
    """A state as the wrapped steps take it (replicated, its carry split
    over the batch)."""
    return jax.device_put(state, state_shardings(self.mesh, state))

  def saved_state(self, state: Any) -> Any:
    """The state as checkpoints save it: global replicated arrays."""
    return state

  def fetch(self, tree: Any) -> Any:
    """A step's replicated outputs as host values."""
    return jax.device_get(tree)

  def host_params(self, params: Any) -> Any:
    """One replica as numpy arrays (this process's shards only)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), params)


class Pmap(Jit):
  """`jax.pmap` over the mesh's devices: arrays [local devices, ...]."""

  mode = "pmap"

  def __init__(self, mesh: Mesh):
    super().__init__(mesh)
    self.num_local_devices = len(local_devices(mesh))

  def wrap(
    self,
    body: Callable,
    batch_args: Sequence[Any],
    donate: bool = False,
    out_split: Any = False,
  ) -> Callable:
    # Every process names all devices (pmap maps over its local ones).
    # The replicated state is stacked per device, its carry split into
    # [devices, rows / device, ...] (so both have axis 0 mapped); other
    # replicated arguments (keys) are broadcast. Outputs come stacked.
    del out_split
    in_axes = tuple(
      0 if i == 0 or any(jax.tree.leaves(split)) else None
      for i, split in enumerate(batch_args)
    )
    return jax.pmap(
      body,
      axis_name=DATA_AXIS,
      in_axes=in_axes,
      donate_argnums=0 if donate else (),
      devices=list(self.mesh.devices.flat),
    )

  def put_batch(self, local: dict[str, np.ndarray]) -> dict[str, Any]:
    """Process-local batch rows to [local devices, rows / device, ...]."""
    n = self.num_local_devices
    return {
      name: value.reshape(n, value.shape[0] // n, *value.shape[1:])
      for name, value in local.items()
    }

  def put_state(self, state: Any) -> Any:
    n = self.num_local_devices
    carry = getattr(state, "carry", None)
    if carry is not None:
      state = state.replace(carry=None)
    state = jax.tree.map(
      lambda x: np.broadcast_to(np.asarray(jax.device_get(x)), (n, *x.shape)),
      state,
    )
    if carry is None:
      return state
    return state.replace(
      carry=jax.tree.map(
        lambda x: (rows := _local_rows(x)).reshape(
          n, rows.shape[0] // n, *rows.shape[1:]
        ),
        carry,
      )
    )

  def saved_state(self, state: Any) -> Any:
    # One replica as a global array: Orbax cannot save pmap's per-process
    # outputs in a multi-process run. The carry: this process's rows of
    # a global array split over the batch.
    sharding = replicated_sharding(self.mesh)

    def global_replica(x):
      replica = np.asarray(x[0])
      return jax.make_array_from_callback(
        replica.shape, sharding, lambda index: replica[index]
      )

    carry = getattr(state, "carry", None)
    if carry is not None:
      state = state.replace(carry=None)
    state = jax.tree.map(global_replica, state)
    if carry is None:
      return state
    rows = batch_sharding(self.mesh)
    return state.replace(
      carry=jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
          rows, np.asarray(x).reshape(-1, *x.shape[2:])
        ),
        carry,
      )
    )

  def fetch(self, tree: Any) -> Any:
    return jax.tree.map(lambda x: np.asarray(x)[0], jax.device_get(tree))

  def host_params(self, params: Any) -> Any:
    return jax.tree.map(lambda x: np.asarray(x[0]), params)


def _specs(split: Any) -> Any:
  """A tree of bools to PartitionSpecs: split over 'data' or replicated."""
  return jax.tree.map(
    lambda s: PartitionSpec(DATA_AXIS) if s else PartitionSpec(), split
  )


def state_shardings(mesh: Mesh, state: Any) -> Any:
  """The shardings of a train state (or its abstract shapes): replicated,
  its `carry` (if any) split over the batch."""
  carry = getattr(state, "carry", None)
  shardings = jax.tree.map(lambda _: replicated_sharding(mesh), state)
  if carry is None:
    return shardings
  return shardings.replace(
    carry=jax.tree.map(lambda _: batch_sharding(mesh), carry)
  )


def _local_rows(x: Any) -> np.ndarray:
  """This process's rows of an array split over the batch, in order."""
  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  shards = sorted(
    x.addressable_shards, key=lambda shard: shard.index[0].start or 0
  )
  unique = {shard.index[0].start: shard for shard in shards}
  return np.concatenate([np.asarray(s.data) for s in unique.values()])


def create(mode: str, mesh: Mesh) -> Jit:
  """The data-parallel runner of `mode`, 'jit' or 'pmap'."""
  runners = {"jit": Jit, "pmap": Pmap}
  if mode not in runners:
    raise ValueError(
      f"train.parallel must be one of {training_config.PARALLEL_MODES}, "
      f"got {mode!r}"
    )
  return runners[mode](mesh)


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
