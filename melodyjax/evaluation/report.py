"""Is the model any good? Held-out bits per note against an n-gram baseline,
statistics of generated melodies against the corpus, and a report.

  python -m melodyjax.evaluate --workdir=runs/esac_cpu [--step=best]

Predictive metrics count every event and every eos of every song of the test
split, each song predicted from its start (bos) to its end, not from fixed
windows. The same scoring code (`ngram.score_distributions`) serves the model
and the Kneser-Ney baseline (fitted on the same training split, order chosen
on validation), so the two columns of the report are computed alike. Writes
`report.md`, PNG figures and a WAV preview into the workdir (or
--output_dir).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from melodyjax.data import build
from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import ngram, stats
from melodyjax.listening import audio, hook, outputs, page, plots
from melodyjax.music import tokens
from melodyjax.sampling import generate


@functools.partial(jax.jit, static_argnames="model")
def _log_probs(model, params, pitch, duration):
  """Next-event log-probabilities at every position, [batch, time, vocab]."""
  pitch_logits, duration_logits, _ = model.apply(
    {"params": params}, pitch, duration
  )
  return (
    jax.nn.log_softmax(pitch_logits, axis=-1),
    jax.nn.log_softmax(duration_logits, axis=-1),
  )


def _song_batches(
  split: dataset_lib.Split, batch_size: int, multiple: int = 32
):
  """Original songs, by length, framed: inputs [bos, events], targets
  [events, eos]; padded to a multiple of `multiple` (few compilations)."""
  rows = np.flatnonzero(split.transpositions == 0)
  lengths = np.diff(split.offsets)[rows]
  rows = rows[np.argsort(lengths, kind="stable")]
  for start in range(0, len(rows), batch_size):
    chunk = rows[start : start + batch_size]
    longest = int(np.diff(split.offsets)[chunk].max()) + 1
    width = -(-longest // multiple) * multiple
    streams = {}
    for stream in tokens.STREAMS:
      inputs = np.zeros((len(chunk), width), np.int32)
      targets = np.zeros((len(chunk), width), np.int32)
      flat = getattr(split, stream)
      for i, row in enumerate(chunk):
        ids = flat[split.offsets[row] : split.offsets[row + 1]]
        inputs[i, 0] = tokens.BOS_ID
        inputs[i, 1 : len(ids) + 1] = ids
        targets[i, : len(ids)] = ids
        targets[i, len(ids)] = tokens.EOS_ID
      streams[stream] = (inputs, targets)
    yield streams


def model_distributions(
  run: generate.Run, split: dataset_lib.Split, batch_size: int = 64
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """The model's next-event distribution at every target of a split.

  Returns:
    {stream: (probs float64 [num_targets, vocab], targets int [num_targets])}
    with targets in song order of length (the baseline uses the same set).
  """
  out = {stream: ([], []) for stream in tokens.STREAMS}
  for batch in _song_batches(split, batch_size):
    log_probs = _log_probs(
      run.model, run.params, batch["pitch"][0], batch["duration"][0]
    )
    for stream, lp in zip(tokens.STREAMS, log_probs, strict=True):
      targets = batch[stream][1]
      mask = targets != tokens.PAD_ID
      out[stream][0].append(np.exp(np.asarray(lp, np.float64)[mask]))
      out[stream][1].append(targets[mask])
  return {
    stream: (np.concatenate(p), np.concatenate(t))
    for stream, (p, t) in out.items()
  }


def load_dataset_of(run: generate.Run) -> dataset_lib.Dataset:
  """The run's dataset (built if needed), checked against its vocabularies."""
  data = run.config.data
  dataset = build.build_dataset(
    os.path.expanduser(data.midi_dir),
    os.path.expanduser(data.dataset_dir),
    dataset_lib.CorpusConfig.from_config(data),
    progress=False,
  )
  if (dataset.pitch_vocab.tokens, dataset.duration_vocab.tokens) != (
    run.pitch_vocab.tokens,
    run.duration_vocab.tokens,
  ):
    raise generate.GenerateError(
      f"the dataset in {dataset.path} has other vocabularies than {run.workdir}"
    )
  return dataset


# ------------------------------------------------------------------- report


def _plot_curves(workdir: str, path: str) -> bool:
  """Train and validation bits per note against steps, into `path`."""
  png = plots.curves_png(hook.read_metrics(workdir), [page.BITS_PANEL])
  if png is None:
    return False
  with open(path, "wb") as f:
    f.write(png)
  return True


def _plot_histograms(generated, reference, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  figure, axes = plt.subplots(1, 3, figsize=(14, 3.5))
  names = [tokens.NOTE_NAMES, [str(i) for i in range(-12, 13)]]
  for ax, key, labels in zip(
    axes[:2], ("pitch_class", "interval"), names, strict=True
  ):
    x = np.arange(len(labels))
    for offset, source, label in (
      (-0.2, reference, "corpus"),
      (0.2, generated, "generated"),
    ):
      values = source[key] / max(source[key].sum(), 1)
      ax.bar(x + offset, values, width=0.4, label=label)
    ax.set_xticks(
      x[:: 1 if key == "pitch_class" else 3],
      labels[:: 1 if key == "pitch_class" else 3],
    )
    ax.set_title(key.replace("_", " "))
  # The 12 most common durations of either set, shortest first.
  counts = {
    d: reference["duration"].get(d, 0) + generated["duration"].get(d, 0)
    for d in set(reference["duration"]) | set(generated["duration"])
  }
  durations = sorted(
    sorted(counts, key=counts.get, reverse=True)[:12],
    key=tokens.parse_duration_token,
  )
  x = np.arange(len(durations))
  for offset, source, label in (
    (-0.2, reference, "corpus"),
    (0.2, generated, "generated"),
  ):
    total = max(sum(source["duration"].values()), 1)
    axes[2].bar(
      x + offset,
      [source["duration"].get(d, 0) / total for d in durations],
      width=0.4,
      label=label,
    )
  axes[2].set_xticks(x, durations, rotation=60)
  axes[2].set_title("duration (quarters)")
  axes[2].legend()
  figure.tight_layout()
  figure.savefig(path, dpi=90)
  plt.close(figure)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    cells = [f"{c:.3f}" if isinstance(c, float) else str(c) for c in row]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def evaluate_run(
  workdir: str,
  *,
  step: str | int = "latest",
  output_dir: str | None = None,
  num_samples: int = 100,
  num_notes: int = 256,
  temperature: float = 1.0,
  max_order: int = 8,
  seed: int = 0,
  log=print,
) -> dict[str, Any]:
  """Scores a run on the test split, compares samples, writes report.md.

  Returns:
    {"model": scores, "ngram": scores, "orders": {...}, "statistics":
    {feature: {"overlap", "kl"}}, "copying": {...}, "report": path}.
  """
  start = time.perf_counter()
  run = generate.load_run(workdir, step)
  output_dir = output_dir or run.workdir
  os.makedirs(output_dir, exist_ok=True)
  dataset = load_dataset_of(run)
  log(
    f"step {run.step}: scoring {int(np.sum(dataset.test.transpositions == 0))}"
    " test songs"
  )
  model_scores = ngram.score_distributions(
    model_distributions(run, dataset.test)
  )
  fitted = ngram.fit_streams(dataset, max_order=max_order)
  ngram_scores = ngram.evaluate_streams(dataset, fitted, "test")
  log(f"generating {num_samples} melodies of up to {num_notes} notes")
  melodies = generate.generate(
    run,
    num_outputs=num_samples,
    num_notes=num_notes,
    temperature=temperature,
    seed=seed,
  )
  train_songs, _ = stats.corpus_melodies(dataset, "train")
  test_songs, _ = stats.corpus_melodies(dataset, "test")
  generated_stats = stats.compute_statistics(melodies)
  train_stats = stats.compute_statistics(train_songs)
  comparison = stats.compare(generated_stats, train_stats)
  reference = stats.compare(stats.compute_statistics(test_songs), train_stats)
  copied = np.array(stats.longest_copied_run(melodies, train_songs))
  copied_test = np.array(stats.longest_copied_run(test_songs, train_songs))
  copying = {
    "generated_median": float(np.median(copied)),
    "generated_max": int(copied.max()),
    "generated_mean_length": float(np.mean([len(m) for m in melodies])),
    "test_median": float(np.median(copied_test)),
    "test_max": int(copied_test.max()),
  }

  curves = _plot_curves(run.workdir, os.path.join(output_dir, "curves.png"))
  _plot_histograms(
    generated_stats, train_stats, os.path.join(output_dir, "histograms.png")
  )
  sample_dir = os.path.join(output_dir, "report_samples")
  paths = outputs.write_outputs(
    melodies[:3],
    sample_dir,
    step=run.step,
    settings={
      "seed": seed,
      "temperature": temperature,
      "num_notes": num_notes,
      "workdir": run.workdir,
    },
  )
  audio.synthesize(melodies[0], os.path.join(output_dir, "preview.wav"))

  rows = []
  for name, label in (
    ("bits_per_note", "bits per note (both)"),
    ("bits_per_note_pitch", "bits per note, pitch"),
    ("bits_per_note_duration", "bits per note, duration"),
    ("top1_pitch", "top-1 pitch"),
    ("top5_pitch", "top-5 pitch"),
    ("top1_duration", "top-1 duration"),
    ("top5_duration", "top-5 duration"),
    ("top1", "top-1 both"),
    ("top5", "top-5 both"),
  ):
    rows.append(
      (
        label,
        model_scores[name],
        ngram_scores[name],
        model_scores[name] - ngram_scores[name],
      )
    )
  stat_rows = [
    (
      name,
      comparison[name]["overlap"],
      comparison[name]["kl"],
      reference[name]["overlap"],
      reference[name]["kl"],
    )
    for name in comparison
  ]
  rel = lambda p: os.path.relpath(p, output_dir)  # noqa: E731
  lines = [
    f"# Evaluation of {run.workdir} at step {run.step}",
    "",
    f"Test split: {model_scores['num_targets']} targets (every event and eos "
    "of every test song, each predicted from its start). Baseline: "
    "interpolated modified Kneser-Ney per stream, orders "
    f"{fitted['pitch']['order']} (pitch) and {fitted['duration']['order']} "
    "(duration) chosen on validation.",
    "",
    _table(rows, ("metric", "model", "n-gram", "model - n-gram")),
    "",
    f"## Samples: {num_samples} melodies (temperature {temperature}, seed "
    f"{seed}) against the {len(train_songs)} training songs",
    "",
    "Overlapping area (1 = same distribution) and KL(generated || corpus); "
    "the test songs against the same training songs give the reference.",
    "",
    _table(stat_rows, ("feature", "overlap", "KL", "test overlap", "test KL")),
    "",
    f"Notes in key: {generated_stats['in_key_share']:.3f} generated, "
    f"{train_stats['in_key_share']:.3f} corpus. Repeated notes: "
    f"{generated_stats['repeated_share']:.3f} generated, "
    f"{train_stats['repeated_share']:.3f} corpus. Mean length "
    f"{copying['generated_mean_length']:.1f} events.",
    "",
    "Copying: longest run of events (pitch and duration) that also occurs in "
    f"a training song: median {copying['generated_median']:.0f}, max "
    f"{copying['generated_max']} for generated melodies; median "
    f"{copying['test_median']:.0f}, max {copying['test_max']} for test songs.",
    "",
  ]
  if curves:
    lines += ["![curves](curves.png)", ""]
  lines += ["![histograms](histograms.png)", ""]
  for path in paths:
    lines += [f"![{os.path.basename(path)}]({rel(path[:-4] + '.png')})", ""]
  lines += [
    "Listen: [preview.wav](preview.wav) (the first sample, a simple "
    "synthesizer); MIDI files in `report_samples/`.",
    "",
  ]
  report_path = os.path.join(output_dir, "report.md")
  with open(report_path, "w") as f:
    f.write("\n".join(lines))
  result = {
    "step": run.step,
    "model": model_scores,
    "ngram": ngram_scores,
    "orders": {s: fitted[s]["order"] for s in tokens.STREAMS},
    "statistics": comparison,
    "reference_statistics": reference,
    "copying": copying,
    "report": report_path,
    "seconds": time.perf_counter() - start,
  }
  with open(os.path.join(output_dir, "evaluation.json"), "w") as f:
    json.dump(result, f, indent=1, default=float)
  if os.path.abspath(output_dir) == run.workdir:
    page.write_page(run.workdir)
  return result
