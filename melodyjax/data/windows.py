"""Cached dataset to training windows and batches. No JAX until `to_global`.

Each split is laid out once as one flat id array per stream: for every song,
`seq_len` pads, then bos, the song's events, eos. Windows are slices of it:

- objective 'all': inputs are `seq_len` events starting at bos (and every
  `seq_len` events after), targets the same window shifted by one, so each
  event and the eos are predicted once; padding targets are masked out.
- objective 'last' (the reference formulation): inputs are the `seq_len`
  events before a target, for every event and eos of every song
  (left-padded near the start).

Conditions (bar position, time signature, mode, style; `data.labels`) are
framed beside the tokens, one value per input position: at bos and at
event i, the bar position and time signature where the *next* event (the
one predicted) starts, so the model knows where in the bar the note it
predicts falls; a song's mode and style at each of its positions. Pads
carry the unknown values (-1 position, label 0).

Batches come from a permutation of the windows drawn from (seed, epoch), so
the batch of any step is a pure function of the step number: that number is
the iterator's position, saved in checkpoints, and a resumed run sees
exactly the batches it would have seen.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
from collections.abc import Iterator, Mapping

import numpy as np

from melodyjax.data import dataset as dataset_lib
from melodyjax.music import tokens

OBJECTIVES = ("all", "last")
# The framed conditions, named as the model's inputs; pads' values.
CONDITIONS = ("bar_position", "time_signature", "mode", "style")
PAD_CONDITION = {"bar_position": -1, "time_signature": 0, "mode": 0, "style": 0}


@dataclasses.dataclass(frozen=True)
class Batch:
  """Host arrays of one batch.

  Attributes:
    pitch, duration: int32 [batch, seq_len] inputs.
    target_pitch, target_duration: int32 [batch, seq_len] ('all') or
      [batch] ('last'); PAD_ID marks no target.
    rows: int32 [batch] global window indices (fresh per row for dropout).
    conditions: {name: int32 [batch, seq_len]} the inputs' conditions
      (`CONDITIONS`; empty for a dataset without them).
    continues: int32 [batch], 1 where the row continues the window its
      lane held at the previous step (`LaneIterator`), else 0; None for
      batches of independent windows.
  """

  pitch: np.ndarray
  duration: np.ndarray
  target_pitch: np.ndarray
  target_duration: np.ndarray
  rows: np.ndarray
  conditions: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
  continues: np.ndarray | None = None

  def as_dict(self) -> dict[str, np.ndarray]:
    """Every array by name, the conditions' beside the tokens'."""
    out = {
      f.name: getattr(self, f.name)
      for f in dataclasses.fields(self)
      if f.name != "conditions" and getattr(self, f.name) is not None
    }
    return {**out, **self.conditions}


@dataclasses.dataclass(frozen=True)
class Windows:
  """All windows of one split for one objective."""

  pitch: np.ndarray  # int32 flat framed stream
  duration: np.ndarray  # int32 flat framed stream
  starts: np.ndarray  # int64 [num_windows] first input position
  seq_len: int
  objective: str
  conditions: Mapping[str, np.ndarray] = dataclasses.field(
    default_factory=dict
  )  # name -> int32 flat framed stream
  songs: np.ndarray | None = None  # int64 [num_windows] song of each window

  def __len__(self) -> int:
    return len(self.starts)

  @property
  def num_targets(self) -> int:
    """Number of real (non-pad) targets over all windows."""
    if self.objective == "last":
      return len(self.starts)
    index = self.starts[:, None] + 1 + np.arange(self.seq_len)
    return int(np.sum(self.pitch[index] != tokens.PAD_ID))

  def gather(self, indices: np.ndarray) -> Batch:
    """The batch of the given window indices; -1 gives an all-pad row."""
    indices = np.asarray(indices, np.int64)
    valid = indices >= 0
    starts = self.starts[np.where(valid, indices, 0)]
    positions = starts[:, None] + np.arange(self.seq_len + 1)
    pitch = self.pitch[positions]
    duration = self.duration[positions]
    pitch[~valid] = tokens.PAD_ID
    duration[~valid] = tokens.PAD_ID
    conditions = {}
    for name, framed in self.conditions.items():
      values = framed[positions[:, :-1]]
      values[~valid] = PAD_CONDITION[name]
      conditions[name] = np.ascontiguousarray(values)
    if self.objective == "all":
      targets = pitch[:, 1:], duration[:, 1:]
    else:
      targets = pitch[:, -1], duration[:, -1]
    return Batch(
      pitch=np.ascontiguousarray(pitch[:, :-1]),
      duration=np.ascontiguousarray(duration[:, :-1]),
      target_pitch=np.ascontiguousarray(targets[0]),
      target_duration=np.ascontiguousarray(targets[1]),
      rows=np.where(valid, indices, 0).astype(np.int32),
      conditions=conditions,
    )


def frame_split(split: dataset_lib.Split, seq_len: int):
  """Flat streams with `seq_len` pads, bos, events, eos per song.

  Returns:
    (pitch, duration, bos_positions) with the streams int32 and the bos
    position of each song, int64 [num_songs].
  """
  num_songs = len(split)
  lengths = np.diff(split.offsets)
  framed = lengths + seq_len + 2
  # A trailing pad block so windows never run past the end.
  total = int(framed.sum()) + seq_len + 1
  song_starts = (np.cumsum(framed) - framed).astype(np.int64)  # [] if none
  bos = song_starts + seq_len
  pitch = np.zeros(total, np.int32)
  duration = np.zeros(total, np.int32)
  pitch[bos] = tokens.BOS_ID
  duration[bos] = tokens.BOS_ID
  eos = bos + lengths + 1
  pitch[eos] = tokens.EOS_ID
  duration[eos] = tokens.EOS_ID
  # Event i of song s goes to bos[s] + 1 + (i - offsets[s]).
  song_of_event = np.repeat(np.arange(num_songs), lengths)
  event_positions = (
    bos[song_of_event]
    + 1
    + np.arange(split.num_events)
    - split.offsets[:-1][song_of_event]
  )
  pitch[event_positions] = split.pitch
  duration[event_positions] = split.duration
  return pitch, duration, bos


def song_conditions(
  split: dataset_lib.Split, song: int
) -> dict[str, np.ndarray]:
  """The conditions of song `song`'s inputs bos, events 1..n: int32
  [num_events + 1] each (see the module docstring); {} without them."""
  if split.bar_position is None:
    return {}
  start, end = split.offsets[song], split.offsets[song + 1]
  n = end - start + 1
  return {
    "bar_position": np.append(
      split.bar_position[start:end], split.end_position[song]
    ).astype(np.int32),
    "time_signature": np.append(
      split.time_signature[start:end], split.end_time_signature[song]
    ).astype(np.int32),
    "mode": np.full(n, split.mode[song], np.int32),
    "style": np.full(n, split.style[song], np.int32),
  }


def frame_conditions(
  split: dataset_lib.Split, bos: np.ndarray, total: int
) -> dict[str, np.ndarray]:
  """Flat framed conditions beside `frame_split`'s streams (eos repeats
  the last event's); {} for a split without them."""
  if split.bar_position is None:
    return {}
  framed = {
    name: np.full(total, PAD_CONDITION[name], np.int32) for name in CONDITIONS
  }
  for song, first in enumerate(bos.tolist()):
    for name, values in song_conditions(split, song).items():
      framed[name][first : first + len(values)] = values
      framed[name][first + len(values)] = values[-1]
  return framed


def make_windows(
  split: dataset_lib.Split, seq_len: int, objective: str = "all"
) -> Windows:
  """All training windows of a split (see module docstring)."""
  if objective not in OBJECTIVES:
    raise ValueError(
      f"objective must be one of {OBJECTIVES}, got {objective!r}"
    )
  if seq_len < 1:
    raise ValueError(f"seq_len must be >= 1, got {seq_len}")
  pitch, duration, bos = frame_split(split, seq_len)
  lengths = np.diff(split.offsets)
  if objective == "all":
    # Windows at bos, bos + seq_len, ... while a target (up to eos) remains.
    per_song = (lengths + seq_len) // seq_len
  else:
    # One window per target: events 1..n and eos, inputs the seq_len before.
    per_song = lengths + 1
  # Window k of song s, for every (s, k).
  song = np.repeat(np.arange(len(split)), per_song)
  k = np.arange(int(per_song.sum())) - np.repeat(
    np.cumsum(per_song) - per_song, per_song
  )
  if objective == "all":
    starts = bos[song] + k * seq_len
  else:
    starts = bos[song] + k + 1 - seq_len
  return Windows(
    pitch,
    duration,
    starts.astype(np.int64),
    seq_len,
    objective,
    frame_conditions(split, bos, len(pitch)),
    song.astype(np.int64),
  )


class BatchIterator:
  """Deterministic shuffled batches; the position is the step number.

  Batch `step` uses windows `perm[e][i * B:(i + 1) * B]` of epoch `e` with
  `i = step % steps_per_epoch`, where `perm[e]` is a permutation drawn from
  (seed, e). Incomplete final batches of an epoch are dropped.

  With several processes, each one takes its contiguous slice of the global
  batch (`process_index * B / process_count`, ...).
  """

  def __init__(
    self,
    windows: Windows,
    batch_size: int,
    seed: int,
    *,
    step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
  ):
    if batch_size % process_count:
      raise ValueError(
        f"batch_size {batch_size} is not divisible by {process_count} processes"
      )
    if len(windows) < batch_size:
      raise ValueError(
        f"the training split has {len(windows)} windows, fewer than one "
        f"batch of {batch_size}"
      )
    self.windows = windows
    self.batch_size = batch_size
    self.seed = seed
    self.step = step
    self.steps_per_epoch = len(windows) // batch_size
    local = batch_size // process_count
    self._local = slice(process_index * local, (process_index + 1) * local)
    self._epoch = -1
    self._perm = None

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._epoch:
      rng = np.random.default_rng([self.seed, epoch])
      self._perm = rng.permutation(len(self.windows))
      self._epoch = epoch
    return self._perm

  def batch_at(self, step: int) -> Batch:
    """The (process-local part of the) batch of optimizer step `step`."""
    epoch, i = divmod(step, self.steps_per_epoch)
    perm = self._permutation(epoch)
    indices = perm[i * self.batch_size : (i + 1) * self.batch_size]
    return self.windows.gather(indices[self._local])

  def state(self) -> dict[str, int]:
    """The position to save in a checkpoint."""
    return {"step": self.step, "seed": self.seed, "batch_size": self.batch_size}

  def __iter__(self) -> Iterator[Batch]:
    return self

  def __next__(self) -> Batch:
    batch = self.batch_at(self.step)
    self.step += 1
    return batch


class LaneIterator(BatchIterator):
  """Batches of `batch_size` lanes that walk through songs in order.

  For a carried LSTM state (`train.carry_state`, truncated backpropagation
  through time as in language modelling). Each epoch `e` deals the songs,
  in a permutation drawn from (seed, e), to the lanes: each song to the
  lane with the fewest windows so far (the lowest lane on a tie). Row `j`
  of step `i` of the epoch is the `i`-th window of lane `j`, so a lane
  holds a song's windows at consecutive steps, bos first, then the next
  song's. Lanes shorter than the epoch's longest are filled with all-pad
  rows (no targets). `Batch.continues` is 1 where a row's window is not
  its song's first: there the step starts from the lane's final state of
  the previous step. An epoch starts every lane on a song's first window,
  so the batch of a step is a function of (seed, step), and the carried
  state to resume with is the one saved with the step before.

  Every window of the split is visited once per epoch; epochs have
  (slightly) different numbers of steps.
  """

  def __init__(
    self,
    windows: Windows,
    batch_size: int,
    seed: int,
    *,
    step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
  ):
    super().__init__(
      windows,
      batch_size,
      seed,
      step=step,
      process_index=process_index,
      process_count=process_count,
    )
    if windows.objective != "all" or windows.songs is None:
      raise ValueError("lanes need the windows of objective 'all'")
    self._per_song = np.bincount(windows.songs)
    self._first = np.cumsum(self._per_song) - self._per_song
    if len(self._per_song) < batch_size:
      raise ValueError(
        f"the training split has {len(self._per_song)} songs, fewer than "
        f"the {batch_size} lanes of a batch"
      )
    self._epoch_ends: list[int] = []  # cumulative steps after each epoch
    self._layout = None

  def layout(self, epoch: int) -> np.ndarray:
    """int64 [steps of the epoch, batch_size] window indices, -1 pad."""
    if epoch == self._epoch:
      return self._layout
    rng = np.random.default_rng([self.seed, epoch])
    order = rng.permutation(len(self._per_song))
    heap = [(0, lane) for lane in range(self.batch_size)]
    lanes: list[list[int]] = [[] for _ in range(self.batch_size)]
    for song in order.tolist():
      length, lane = heapq.heappop(heap)
      lanes[lane].append(song)
      heapq.heappush(heap, (length + int(self._per_song[song]), lane))
    steps = max(length for length, _ in heap)
    layout = np.full((steps, self.batch_size), -1, np.int64)
    for lane, songs in enumerate(lanes):
      indices = [
        np.arange(self._first[s], self._first[s] + self._per_song[s])
        for s in songs
      ]
      column = np.concatenate(indices)
      layout[: len(column), lane] = column
    self._epoch, self._layout = epoch, layout
    return layout

  def _locate(self, step: int) -> tuple[int, int]:
    """(epoch, step within it) of optimizer step `step`."""
    while not self._epoch_ends or self._epoch_ends[-1] <= step:
      done = self._epoch_ends[-1] if self._epoch_ends else 0
      self._epoch_ends.append(done + len(self.layout(len(self._epoch_ends))))
    epoch = bisect.bisect_right(self._epoch_ends, step)
    start = self._epoch_ends[epoch - 1] if epoch else 0
    return epoch, step - start

  def batch_at(self, step: int) -> Batch:
    epoch, i = self._locate(step)
    indices = self.layout(epoch)[i][self._local]
    song = self.windows.songs[np.maximum(indices, 0)]
    continues = (indices >= 0) & (indices > self._first[song])
    batch = self.windows.gather(indices)
    return dataclasses.replace(batch, continues=continues.astype(np.int32))


def create_iterator(
  windows: Windows,
  batch_size: int,
  seed: int,
  *,
  carry_state: bool = False,
  **kwargs,
) -> BatchIterator:
  """`LaneIterator` when the LSTM state is carried, else `BatchIterator`."""
  kind = LaneIterator if carry_state else BatchIterator
  return kind(windows, batch_size, seed, **kwargs)


def eval_batches(
  windows: Windows,
  batch_size: int,
  *,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[Batch]:
  """Every window once, in order; the last batch is padded with pad rows."""
  local = batch_size // process_count
  for start in range(0, len(windows), batch_size):
    indices = np.arange(start, start + batch_size)
    indices[indices >= len(windows)] = -1
    yield windows.gather(
      indices[process_index * local : (process_index + 1) * local]
    )
