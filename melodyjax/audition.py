"""Listening to a run: melodies sampled while it trains, and an audition page.

The train loop calls `Auditioner.sample` every `train.sample_every_steps` and
at the last step. It samples the current parameters with the code of
`sample_main.py` (`generate.generate`, `generate.write_outputs`) into
`workdir/samples/<step>/` (MIDI, JSON sidecar, piano-roll PNG, WAV) and
returns their statistics against the training songs for the metrics log.
`write_page` (re)writes `workdir/audition.html`: a page that needs no server
and fetches nothing, with the run's numbers, its curves and every sample.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from melodyjax import corpus, generate, midi_io, plots, stats
from melodyjax import model as model_lib

PAGE = "audition.html"
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
  melodies: Sequence[Sequence[midi_io.Event]],
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
    dataset: corpus.Dataset,
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
    paths = generate.write_outputs(
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


def _sample_steps(workdir: str) -> list[tuple[int, list[dict[str, Any]]]]:
  """[(step, sidecars sorted by index)], newest step first."""
  root = os.path.join(workdir, SAMPLES_DIR)
  if not os.path.isdir(root):
    return []
  steps = []
  for name in os.listdir(root):
    folder = os.path.join(root, name)
    if not (name.isdigit() and os.path.isdir(folder)):
      continue
    sidecars = []
    for file in os.listdir(folder):
      if re.fullmatch(r"sample_\d+_\d+\.json", file):
        with open(os.path.join(folder, file)) as f:
          try:
            sidecar = json.load(f)
          except json.JSONDecodeError:
            continue
        sidecar["stem"] = f"{SAMPLES_DIR}/{name}/{file[: -len('.json')]}"
        sidecars.append(sidecar)
    if sidecars:
      steps.append((int(name), sorted(sidecars, key=lambda s: s["index"])))
  return sorted(steps, reverse=True)


BITS_PANEL = ("bits per note", ("train/bits_per_note", "eval/bits_per_note"))
SAMPLE_PANEL = (
  "samples against training songs",
  (
    "sample/overlap_pitch_class",
    "sample/overlap_interval",
    "sample/overlap_duration",
    "sample/in_key_share",
  ),
)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  def cell(value):
    if isinstance(value, float):
      return f"{value:.3f}"
    return html.escape(str(value))

  head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
  body = "".join(
    "<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
    for row in rows
  )
  return f"<table><tr>{head}</tr>{body}</table>"


def _numbers_section(workdir: str, records: Sequence[Mapping[str, Any]]) -> str:
  parts = ["<h2>Numbers</h2>"]
  path = os.path.join(workdir, "evaluation.json")
  evaluation = None
  if os.path.exists(path):
    with open(path) as f:
      evaluation = json.load(f)
  if evaluation:
    model, ngram = evaluation["model"], evaluation["ngram"]
    parts.append(
      f"<p>Test split at step {evaluation['step']} "
      f"({int(model['num_targets']):,} targets): bits per note of the model "
      "against an interpolated Kneser-Ney n-gram fitted on the same training "
      'songs (<a href="report.md">report.md</a> has the details).</p>'
    )
    rows = [
      (label, model[key], ngram[key], model[key] - ngram[key])
      for key, label in (
        ("bits_per_note", "bits per note"),
        ("bits_per_note_pitch", "pitch"),
        ("bits_per_note_duration", "duration"),
        ("top1", "top-1 accuracy (both)"),
      )
    ]
    parts.append(_table(("", "model", "n-gram", "model - n-gram"), rows))
    rows = [
      (name, scores["overlap"], scores["kl"])
      for name, scores in evaluation["statistics"].items()
    ]
    parts.append(
      "<p>Sample statistics of the evaluation's melodies against the "
      "training songs (overlap 1 = same distribution):</p>"
    )
    parts.append(_table(("feature", "overlap", "KL"), rows))
  else:
    command = f"python -m melodyjax.evaluate --workdir={workdir}"
    parts.append(
      "<p>No test-split evaluation yet: <code>"
      f"{html.escape(command)}</code> scores the held-out bits per note "
      "against the n-gram baseline and rewrites this page.</p>"
    )
  sampled = [r for r in records if "sample/overlap_pitch_class" in r]
  if sampled:
    parts.append(
      "<p>Melodies sampled during training (below), against the training "
      "songs: mean notes per song and pitch range (semitones), share of "
      "notes in key and of repeated notes, and the overlap of pitch-class, "
      "interval and duration histograms (1 = same distribution).</p>"
    )
    columns = (
      ("notes", "notes_per_song"),
      ("range", "pitch_range"),
      ("in key", "in_key_share"),
      ("repeated", "repeated_share"),
      ("pitch class", "overlap_pitch_class"),
      ("interval", "overlap_interval"),
      ("duration", "overlap_duration"),
    )
    rows = [
      (r["step"], *(r.get(f"sample/{key}", "") for _, key in columns))
      for r in sampled
    ]
    parts.append(_table(("step", *(label for label, _ in columns)), rows))
  evals = [r for r in records if "eval/bits_per_note" in r]
  if evals:
    last = evals[-1]
    parts.append(
      f"<p>Validation at step {last['step']}: "
      f"{last['eval/bits_per_note']:.3f} bits per note (pitch "
      f"{last['eval/bits_per_note_pitch']:.3f}, duration "
      f"{last['eval/bits_per_note_duration']:.3f}).</p>"
    )
  return "\n".join(parts)


def _sample_section(
  step: int,
  sidecars: Sequence[Mapping[str, Any]],
  exists: Callable[[str], bool],
) -> str:
  first = sidecars[0]
  parts = [f'<section class="step" id="step-{step}">', f"<h3>Step {step}</h3>"]
  parts.append(
    "<p>"
    + html.escape(
      f"temperature {first.get('temperature')}, top-p {first.get('top_p')}, "
      f"seed {first.get('seed')}, primer {first.get('primer') or 'none'}"
    )
    + "</p>"
  )
  for sidecar in sidecars:
    stem = sidecar["stem"]
    name = html.escape(os.path.basename(stem))
    parts.append('<div class="melody">')
    parts.append(
      f"<p><b>{name}</b>: {sidecar.get('num_events', '?')} events, "
      f'<a href="{html.escape(stem)}.mid">MIDI</a>, '
      f'<a href="{html.escape(stem)}.json">settings</a></p>'
    )
    if exists(stem + ".wav"):
      parts.append(
        f'<audio controls preload="auto" src="{html.escape(stem)}.wav"></audio>'
      )
    if exists(stem + ".png"):
      parts.append(
        f'<img class="roll" alt="piano roll of {name}" '
        f'src="{html.escape(stem)}.png">'
      )
    parts.append("</div>")
  parts.append("</section>")
  return "\n".join(parts)


STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 1em auto;
  padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.melody { margin: 0.8em 0; padding: 0.5em; background: #f6f6f6; }
.roll { max-width: 100%; display: block; }
audio { width: 100%; max-width: 520px; }
nav a { margin-right: 0.8em; }
"""


def write_page(workdir: str) -> str:
  """(Re)writes `workdir/audition.html`; returns its path.

  The page uses relative links to the workdir's files and embeds its one
  figure, so it opens from disk (or a copy of the workdir) with no server
  and no network.
  """
  workdir = os.path.abspath(workdir)
  records = read_metrics(workdir)
  samples = _sample_steps(workdir)
  title = f"Audition: {os.path.basename(workdir)}"
  parts = [
    "<!DOCTYPE html>",
    '<html lang="en"><head><meta charset="utf-8">',
    f"<title>{html.escape(title)}</title>",
    f"<style>{STYLE}</style></head><body>",
    f"<h1>{html.escape(title)}</h1>",
    f"<p><code>{html.escape(workdir)}</code></p>",
  ]
  if samples:
    links = " ".join(f'<a href="#step-{s}">step {s}</a>' for s, _ in samples)
    parts.append(f"<nav>Samples: {links}</nav>")
  parts.append(_numbers_section(workdir, records))
  curves = plots.curves_png(records, [BITS_PANEL, SAMPLE_PANEL])
  if curves:
    data = base64.b64encode(curves).decode("ascii")
    parts += [
      "<h2>Training curves</h2>",
      f'<img class="curves" alt="training curves" '
      f'src="data:image/png;base64,{data}">',
    ]
  parts.append("<h2>Samples</h2>")
  if not samples:
    parts.append("<p>No samples yet.</p>")
  exists = lambda stem: os.path.exists(os.path.join(workdir, stem))  # noqa: E731
  for step, sidecars in samples:
    parts.append(_sample_section(step, sidecars, exists))
  parts.append("</body></html>\n")
  path = os.path.join(workdir, PAGE)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write("\n".join(parts))
  os.replace(tmp, path)
  return path


def describe_outputs(workdir: str) -> str:
  """Where a run's samples and audition page are (for the end of a run)."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  samples = _sample_steps(workdir)
  lines = []
  if samples:
    step, sidecars = samples[0]
    folder = os.path.join(workdir, SAMPLES_DIR, str(step))
    lines.append(f"samples:     {folder} ({len(sidecars)} melodies: .mid .wav)")
  if os.path.exists(os.path.join(workdir, PAGE)):
    lines.append(f"audition:    file://{os.path.join(workdir, PAGE)}")
  return "\n".join(lines)
