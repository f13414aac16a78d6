"""Listening while training: melodies sampled every few steps, logged.

`AuditionHook` is a training hook (`training.loop.Hook`): every
`train.sample_every_steps` and at the last step it samples the current
parameters with the code of `sample_main.py` (`generate.generate`,
`outputs.write_outputs`) into `workdir/samples/<step>/` (MIDI, JSON
sidecar, piano-roll PNG, WAV), logs their statistics against the training
songs as `sample/*` with the piano rolls and the audio for TensorBoard, and
rewrites the audition page.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from melodyjax.listening import audio, outputs, page, stats
from melodyjax.music.events import Event
from melodyjax.sampling import generate, plan
from melodyjax.sampling import request as request_lib
from melodyjax.training import loop, runs
from melodyjax.training import workdir as workdir_lib

# Per-set statistics logged as sample/<name>; overlaps are against the
# training songs (1 = same distribution), as in the evaluation report.
SHARE_STATS = ("in_key_share", "repeated_share")
MEAN_STATS = ("notes_per_song", "pitch_range") + stats.REPETITION


def sample_metrics(
  melodies: Sequence[Sequence[Event]],
  reference: Mapping[str, Any],
  time_signature: tuple[int, int] = stats.DEFAULT_SIGNATURE,
) -> dict[str, float]:
  """sample/* metrics of a set of melodies against reference statistics;
  the melodies' bars are of `time_signature` from their first event."""
  generated = stats.compute_statistics(melodies, time_signature=time_signature)
  metrics = {}
  for name in SHARE_STATS:
    metrics[f"sample/{name}"] = float(generated[name])
  for name in MEAN_STATS:
    values = generated[name][~np.isnan(generated[name])]
    metrics[f"sample/{name}"] = float(values.mean()) if values.size else 0.0
  for name, scores in stats.compare(generated, reference).items():
    metrics[f"sample/overlap_{name}"] = scores["overlap"]
  return {k: v for k, v in metrics.items() if math.isfinite(v)}


class AuditionHook:
  """Samples a training run's parameters into its workdir (process 0)."""

  def __init__(self, config: ml_collections.ConfigDict):
    """Checks the config's `sample` group (`sampling.request.check_group`).

    Raises:
      ConfigError: its first bad field.
    """
    request_lib.check_group(config.sample)
    self.config = config
    self._reference = None

  def due(self, step: int) -> bool:
    """Every `train.sample_every_steps` (0: never) and at the last step."""
    every = self.config.train.sample_every_steps
    return step == self.config.train.num_train_steps or (
      every > 0 and step % every == 0
    )

  def __call__(self, step: int, params: Any, run: loop.RunInfo) -> None:
    metrics, images, sounds = self.sample(step, params, run)
    run.writer.write(step, metrics)
    run.writer.write_images(step, images)
    run.writer.write_audio(step, sounds)
    page.write_page(run.workdir)

  def reference(self, run: loop.RunInfo) -> dict[str, Any]:
    """Statistics of the training songs (computed on first use)."""
    if self._reference is None:
      self._reference = stats.corpus_statistics(run.dataset, "train")
    return self._reference

  def sample(self, step: int, params: Any, run: loop.RunInfo):
    """Writes `samples/<step>/`.

    Args:
      step: the optimizer step of `params`.
      params: numpy parameters.
      run: the training run.

    Returns:
      (sample/* metrics, piano rolls {name: float [height, width, 3]},
      audio {name: (samples in [-1, 1], rate in Hz)}).
    """
    start = time.perf_counter()
    request = request_lib.from_group(self.config.sample)
    generating = runs.Run(
      run.workdir,
      self.config,
      run.model,
      params,
      step,
      run.dataset.pitch_vocab,
      run.dataset.duration_vocab,
      labels=run.dataset.labels,
    )
    melodies = generate.generate(generating, request)
    resolved = plan.make_plan(generating, request)
    paths = outputs.write_outputs(
      melodies,
      workdir_lib.samples_dir(run.workdir, step),
      step=step,
      workdir=run.workdir,
      request=request,
      rendering=outputs.Rendering(
        tempo_bpm=self.config.sample.tempo_bpm,
        time_signature=resolved.time_signature,
        key_signature=plan.key_signature(
          resolved, self.config.data.normalize_key
        ),
      ),
      sampled_during_training=True,
    )
    metrics = sample_metrics(
      melodies, self.reference(run), resolved.time_signature
    )
    metrics["sample/seconds"] = time.perf_counter() - start
    import matplotlib.image

    images, sounds = {}, {}
    for i, path in enumerate(paths):
      stem = path[: -len(".mid")]
      images[f"samples/piano_roll_{i}"] = matplotlib.image.imread(
        stem + ".png"
      )[..., :3]
      sounds[f"samples/audio_{i}"] = audio.read_wav(stem + ".wav")
    return metrics, images, sounds
