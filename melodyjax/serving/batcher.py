"""Concurrent requests in one compiled sampler call.

The sampler is jitted with a static note count, and a new batch size
recompiles it, so a call has a shape from a few fixed sizes: the note count
rounded up to a bucket (`NOTE_BUCKETS`), each request's melodies padded to
a row bucket (`ROW_BUCKETS`), and the requests of one call (its slots)
padded to a slot bucket. Requests that arrive within `wait_seconds` of each
other (or while a call runs) and share a shape (`Batcher.shape`: note
bucket, row bucket, short-term orders or none, the search's rows, with or
without controls) run in one call: `sample_slots`, the sampler vmapped over
slots, each slot with its own key, settings and controls (metre, mode,
style, bars, ending: traced values, so requests that differ in them share
a call; a beam search or best-of changes the shape).

Each request gets exactly the melodies `sample_main.py` gives for the same
settings and seed: a melody's first events do not depend on the buffer's
length, padded rows do not change the noise of the rows before them
(threefry draws each value from its index), and the extra events are cut
(`generate.decode_melodies`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from melodyjax.music.events import Event
from melodyjax.sampling import constraints, draw, generate, sampler
from melodyjax.serving import requests
from melodyjax.training import runs

NOTE_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SLOT_BUCKETS = (1, 2, 4, 8, 16, 32)


def bucket(value: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= value."""
  return next(b for b in buckets if b >= value)


@functools.partial(
  jax.jit,
  static_argnames=(
    "model",
    "num_notes",
    "rest_id",
    "short_term_order",
    "beam_size",
    "branch_factor",
  ),
)
def sample_slots(
  model,
  params,
  primer_pitch: jax.Array,
  primer_duration: jax.Array,
  primer_lengths: jax.Array,
  keys: jax.Array,
  settings: draw.Settings,
  controls: constraints.Controls | None = None,
  *,
  num_notes: int,
  rest_id: int,
  short_term_order: tuple[int, int] | None = None,
  beam_size: int = 1,
  branch_factor: int = 1,
):
  """`sampler.sample` for several requests (slots) at once.

  Args:
    model, params: as `sampler.sample`.
    primer_pitch, primer_duration: int [slots, rows, max_primer].
    primer_lengths: int [slots, rows].
    keys: [slots] PRNG keys, one per request.
    settings: `Settings` whose fields are [slots, 2].
    controls: `Controls` whose fields have a leading [slots] axis, or None.
    num_notes, rest_id, short_term_order, beam_size, branch_factor: as
      `sampler.sample` (static).

  Returns:
    (pitch, duration) int32 [slots, rows, 1 + max_primer + num_notes].
  """

  def one(pitch, duration, lengths, key, slot_settings, slot_controls):
    return sampler.sample(
      model,
      params,
      pitch,
      duration,
      lengths,
      key,
      slot_settings,
      slot_controls,
      num_notes=num_notes,
      rest_id=rest_id,
      short_term_order=short_term_order,
      beam_size=beam_size,
      branch_factor=branch_factor,
    )

  return jax.vmap(one)(
    primer_pitch, primer_duration, primer_lengths, keys, settings, controls
  )


def _stack_controls(group, rows: int, slots: int) -> constraints.Controls:
  """The group's controls as one `Controls` of [slots, ...] fields: each
  request's rows padded to `rows` (copies of its first), padding slots
  copies of the first request's."""
  per_slot = []
  for job in group:
    controls = jax.device_get(job.checked.controls)
    padded = {}
    for name, value in controls._asdict().items():
      if name in _PER_ROW:
        extra = np.repeat(value[:1], rows - value.shape[0], axis=0)
        value = np.concatenate([value, extra])
      padded[name] = value
    per_slot.append(padded)
  per_slot += [per_slot[0]] * (slots - len(group))
  return constraints.Controls(
    **{
      name: jnp.asarray(np.stack([slot[name] for slot in per_slot]))
      for name in constraints.Controls._fields
    }
  )


# The fields of `Controls` with a leading [batch] axis.
_PER_ROW = ("bar_steps", "max_steps", "end_on_tonic", "tonic", "labels")


@dataclasses.dataclass
class _Job:
  checked: requests.Checked
  future: asyncio.Future
  shape: tuple = ()


class Batcher:
  """Runs checked requests, grouping concurrent ones into sampler calls.

  One thread runs the sampler (calls never overlap); the event loop keeps
  taking requests meanwhile, and those wait for the next call.
  """

  def __init__(
    self,
    run: runs.Run,
    limits: requests.Limits,
    *,
    max_slots: int = 8,
    wait_seconds: float = 0.005,
  ):
    self.run = run
    self.limits = limits
    self.max_slots = max(s for s in SLOT_BUCKETS if s <= max(1, max_slots))
    self.wait_seconds = wait_seconds
    self.calls = 0
    self.served = 0
    self.shapes: set[tuple[int, int, int]] = set()
    self._queue: asyncio.Queue[_Job] | None = None
    self._executor = concurrent.futures.ThreadPoolExecutor(1, "sampler")
    self._rest_id = generate.rest_id(run)

  def shape(self, checked: requests.Checked) -> tuple:
    """One call's shape: (note bucket, row bucket, short-term orders or
    None, (beam_size, branch_factor), whether controls are fed). A run
    without conditions asked for no bars, ending or search samples
    without controls, as before they existed (the same notes)."""
    request = checked.request
    search = request.search_shape
    controlled = checked.controls is not None and bool(
      self.run.model.config.conditions
      or request.bars
      or request.end_on_tonic
      or search != (1, 1)
    )
    # The buffer's last event ends a melody with --bars or --end_on_tonic
    # (`constraints.pitch_ban`): such a request's buffer is its own length.
    ending = request.bars or request.end_on_tonic
    return (
      request.num_notes if ending else bucket(request.num_notes, NOTE_BUCKETS),
      bucket(request.num_outputs, ROW_BUCKETS),
      request.short_term_orders,
      search,
      controlled,
    )

  async def generate(self, checked: requests.Checked) -> list[list[Event]]:
    """The request's melodies (primer included, in the run's normalised
    key: `plan.to_key` moves them), from the next call."""
    if self._queue is None:
      raise RuntimeError("the batcher is not running (call `serve` first)")
    future = asyncio.get_running_loop().create_future()
    await self._queue.put(_Job(checked, future, self.shape(checked)))
    return await future

  async def serve(self) -> None:
    """Takes jobs from the queue until cancelled."""
    self._queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    while True:
      jobs = [await self._queue.get()]
      deadline = loop.time() + self.wait_seconds
      while True:
        try:
          jobs.append(self._queue.get_nowait())
          continue
        except asyncio.QueueEmpty:
          pass
        left = deadline - loop.time()
        if left <= 0:
          break
        try:
          jobs.append(await asyncio.wait_for(self._queue.get(), left))
        except TimeoutError:
          break
      for group in self._groups(jobs):
        try:
          results = await loop.run_in_executor(
            self._executor, self._call, group
          )
        except Exception as e:  # noqa: BLE001 - each waiting request hears it
          for job in group:
            if not job.future.done():
              job.future.set_exception(e)
          continue
        for job, melodies in zip(group, results, strict=True):
          if not job.future.done():  # its client may have gone
            job.future.set_result(melodies)

  def _groups(self, jobs: Sequence[_Job]) -> list[list[_Job]]:
    by_shape: dict[tuple, list[_Job]] = {}
    for job in jobs:
      by_shape.setdefault(job.shape, []).append(job)
    groups = []
    for same in by_shape.values():
      for start in range(0, len(same), self.max_slots):
        groups.append(same[start : start + self.max_slots])
    return groups

  def _call(self, group: Sequence[_Job]) -> list[list[list[Event]]]:
    """One sampler call for the group (in the sampler thread)."""
    num_notes, rows, short_term_order, search, controlled = group[0].shape
    slots = bucket(len(group), SLOT_BUCKETS)
    primer = self.limits.max_primer_notes
    pitch = np.zeros((slots, rows, primer), np.int32)
    duration = np.zeros((slots, rows, primer), np.int32)
    lengths = np.zeros((slots, rows), np.int32)
    seeds = [job.checked.request.seed for job in group]
    seeds += [0] * (slots - len(group))
    settings = np.zeros((4, slots, 2), np.float64)
    settings[0], settings[2] = 1.0, 1.0  # padding slots: plain sampling
    for i, job in enumerate(group):
      checked = job.checked
      n = len(checked.primer_pitch)
      pitch[i, :, :n] = checked.primer_pitch
      duration[i, :, :n] = checked.primer_duration
      lengths[i, :] = n
      request = checked.request
      settings[:, i] = (
        request.temperature,
        request.top_k,
        request.top_p,
        request.short_term,
      )
    out = sample_slots(
      self.run.model,
      self.run.params,
      jnp.asarray(pitch),
      jnp.asarray(duration),
      jnp.asarray(lengths),
      jnp.stack([jax.random.key(seed) for seed in seeds]),
      draw.Settings(
        jnp.asarray(settings[0], jnp.float32),
        jnp.asarray(settings[1], jnp.int32),
        jnp.asarray(settings[2], jnp.float32),
        None
        if short_term_order is None
        else draw.short_term_bands(jnp.asarray(settings[3], jnp.float32)),
      ),
      _stack_controls(group, rows, slots) if controlled else None,
      num_notes=num_notes,
      rest_id=self._rest_id,
      short_term_order=short_term_order,
      beam_size=search[0],
      branch_factor=search[1],
    )
    pitch_out, duration_out = jax.device_get(out)
    self.calls += 1
    self.served += len(group)
    self.shapes.add((slots, rows, num_notes))
    results = []
    for i, job in enumerate(group):
      request = job.checked.request
      keep = len(job.checked.primer_pitch) + request.num_notes
      results.append(
        generate.decode_melodies(
          self.run,
          pitch_out[i, : request.num_outputs],
          duration_out[i, : request.num_outputs],
          max_events=keep,
        )
      )
    return results

  def warm(
    self, num_notes: Sequence[int] = (128,), rows: Sequence[int] = (1,)
  ) -> float:
    """Compiles the sampler for every slot bucket of these shapes (before
    the first request); returns the seconds it took."""
    start = time.perf_counter()
    for notes in num_notes:
      for row in rows:
        checked = requests.check(
          {"num_notes": notes, "num_outputs": row}, self.run, self.limits
        )
        shape = self.shape(checked)
        for slots in SLOT_BUCKETS:
          if slots > self.max_slots:
            break
          self._call([_Job(checked, None, shape)] * slots)
    self.calls = self.served = 0
    return time.perf_counter() - start
