"""Listening to a run: melodies sampled while it trains, and an audition page.

The train loop calls `Auditioner.sample` every `train.sample_every_steps` and
at the last step. It samples the current parameters with the code of
`sample_main.py` (`generate.generate`, `outputs.write_outputs`) into
`workdir/samples/<step>/` (MIDI, JSON sidecar, piano-roll PNG, WAV) and
returns their statistics against the training songs for the metrics log.
`write_page` (re)writes `workdir/audition.html`: a page that needs no server
and fetches nothing, with the run's numbers, its curves and every sample.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import stats
from melodyjax.listening import outputs
from melodyjax.model import model as model_lib
from melodyjax.music.events import Event
from melodyjax.sampling import generate

SAMPLES_DIR = "samples"
# Per-set statistics logged as sample/<name>; overlaps are against the
# training songs (1 = same distribution), as in the evaluation report.
SHARE_STATS = ("in_key_share", "repeated_share")
MEAN_STATS = ("notes_per_song", "pitch_range")


def check_config(config: ml_collections.ConfigDict) -> None:
  """The sampling fields of a training config, named when wrong."""
  problems = []
  if config.train.sample_every_steps < 0:
    problems.append("config.train.sample_every_steps must be >= 0")
  for field in ("num_outputs", "num_notes"):
    if config.sample[field] < 1:
      problems.append(f"config.sample.{field} must be >= 1")
  if config.sample.temperature <= 0:
    problems.append("config.sample.temperature must be > 0")
  if not 0 < config.sample.top_p <= 1:
    problems.append("config.sample.top_p must be in (0, 1]")
  if problems:
    raise generate.GenerateError("; ".join(problems))


def is_sample_step(config: ml_collections.ConfigDict, step: int) -> bool:
  """Every `train.sample_every_steps` (0: never) and at the last step."""
  every = config.train.sample_every_steps
  return step == config.train.num_train_steps or (
    every > 0 and step % every == 0
  )


def host_params(params: Any, parallel_mode: str) -> Any:
  """One replica of the (replicated) parameters as numpy arrays.

  Works in multi-process runs too: it reads only this process's shards.
  """
  if parallel_mode == "pmap":
    return jax.tree.map(lambda x: np.asarray(x[0]), params)
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), params)


def sample_metrics(
  melodies: Sequence[Sequence[Event]],
  reference: Mapping[str, Any],
) -> dict[str, float]:
  """sample/* metrics of a set of melodies against reference statistics."""
  generated = stats.compute_statistics(melodies)
  metrics = {}
  for name in SHARE_STATS:
    metrics[f"sample/{name}"] = float(generated[name])
  for name in MEAN_STATS:
    values = generated[name][~np.isnan(generated[name])]
    metrics[f"sample/{name}"] = float(values.mean()) if values.size else 0.0
  for name, scores in stats.compare(generated, reference).items():
    metrics[f"sample/overlap_{name}"] = scores["overlap"]
  return {k: v for k, v in metrics.items() if math.isfinite(v)}


class Auditioner:
  """Samples a training run's parameters into its workdir (process 0)."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    workdir: str,
    model: model_lib.MelodyModel,
    dataset: dataset_lib.Dataset,
  ):
    check_config(config)
    self.config = config
    self.workdir = workdir
    self.model = model
    self.dataset = dataset
    self._reference = None

  def reference(self) -> dict[str, Any]:
    """Statistics of the training songs (computed on first use)."""
    if self._reference is None:
      songs, _ = stats.corpus_melodies(self.dataset, "train")
      self._reference = stats.compute_statistics(songs)
    return self._reference

  def sample(
    self, step: int, params: Any
  ) -> tuple[dict[str, float], dict[str, Any]]:
    """Writes `samples/<step>/`; the caller logs and then `write_page`s.

    Args:
      step: the optimizer step of `params`.
      params: numpy parameters (`host_params`).

    Returns:
      (sample/* metrics, {"images": {name: float [height, width, 3]},
      "audio": {name: (WAV bytes, sample rate in Hz, frames)}}) for the
      metric writers.
    """
    start = time.perf_counter()
    sample = self.config.sample
    run = generate.Run(
      self.workdir,
      self.config,
      self.model,
      params,
      step,
      self.dataset.pitch_vocab,
      self.dataset.duration_vocab,
    )
    melodies = generate.generate(
      run,
      num_outputs=sample.num_outputs,
      num_notes=sample.num_notes,
      temperature=sample.temperature,
      top_p=sample.top_p,
      seed=sample.seed,
    )
    output_dir = os.path.join(self.workdir, SAMPLES_DIR, str(step))
    settings = {
      "workdir": self.workdir,
      "seed": sample.seed,
      "num_outputs": sample.num_outputs,
      "num_notes": sample.num_notes,
      "temperature": [sample.temperature] * 2,
      "top_k": [0, 0],
      "top_p": [sample.top_p] * 2,
      "mode": "scan",
      "primer": "",
      "primer_midi": None,
      "sampled_during_training": True,
    }
    paths = outputs.write_outputs(
      melodies,
      output_dir,
      step=step,
      settings=settings,
      tempo_bpm=sample.tempo_bpm,
      key_signature="C" if self.config.data.normalize_key else None,
    )
    seconds = time.perf_counter() - start
    metrics = sample_metrics(melodies, self.reference())
    metrics["sample/seconds"] = seconds
    media = {"images": {}, "audio": {}}
    import matplotlib.image  # pylint: disable=g-import-not-at-top

    for i, path in enumerate(paths):
      stem = path[: -len(".mid")]
      media["images"][f"samples/piano_roll_{i}"] = matplotlib.image.imread(
        stem + ".png"
      )[..., :3]
      media["audio"][f"samples/audio_{i}"] = read_wav(stem + ".wav")
    return metrics, media


def read_wav(path: str) -> tuple[bytes, int, int]:
  """A WAV file's bytes, sample rate in Hz and number of frames."""
  import wave  # pylint: disable=g-import-not-at-top

  with wave.open(path) as f:
    rate, frames = f.getframerate(), f.getnframes()
  with open(path, "rb") as f:
    return f.read(), rate, frames


def write_media(tensorboard: Any, step: int, media: Mapping[str, Any]) -> None:
  """Adds `Auditioner.sample`'s piano rolls and WAVs to a tensorboardX
  SummaryWriter."""
  from tensorboardX.proto import summary_pb2  # pylint: disable=g-import-not-at-top

  for name, image in media["images"].items():
    tensorboard.add_image(name, image, step, dataformats="HWC")
  for name, (wav, rate, frames) in media["audio"].items():
    # add_audio would re-encode through soundfile; these are WAVs already.
    value = summary_pb2.Summary.Audio(
      sample_rate=rate,
      num_channels=1,
      length_frames=frames,
      encoded_audio_string=wav,
      content_type="audio/wav",
    )
    tensorboard._get_file_writer().add_summary(  # what add_* use
      summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=name, audio=value)]
      ),
      step,
    )
  tensorboard.flush()


# --------------------------------------------------------------------- page


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """metrics.jsonl's records ([] before the first), skipping a cut line."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue  # a line cut short by a crash
  return records
