"""Is the model any good? The evaluation of a run and its report.

  melodyjax-evaluate --workdir=runs/esac_cpu [--step=best]

Held-out scores (`predict`, scored by `scoring` like the baselines of
`baselines`, fitted on the same training split with their settings chosen
on validation, and for a conditioned run those of `labelled`, given the
labels the run reads: the headline compares models given the same
information), statistics of generated melodies against the corpus
(`stats`), and a report: `report.md`, `evaluation.json`, PNG figures, a WAV
preview and a few samples, in the workdir (or `output_dir`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from melodyjax import files
from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import baselines, cross, ngram, predict
from melodyjax.evaluation import labelled as labelled_lib
from melodyjax.evaluation import memory as memory_lib
from melodyjax.listening import audio, outputs, page, plots, stats
from melodyjax.music import tokens
from melodyjax.music.events import Event
from melodyjax.sampling import generate, plan
from melodyjax.sampling import request as request_lib
from melodyjax.training import metrics as metrics_lib
from melodyjax.training import runs
from melodyjax.training import workdir as workdir_lib

SCORE_ROWS = (
  ("bits_per_note", "bits per note (both)"),
  ("bits_per_note_pitch", "bits per note, pitch"),
  ("bits_per_note_duration", "bits per note, duration"),
  ("top1_pitch", "top-1 pitch"),
  ("top5_pitch", "top-5 pitch"),
  ("top1_duration", "top-1 duration"),
  ("top5_duration", "top-5 duration"),
  ("top1", "top-1 both"),
  ("top5", "top-5 both"),
)
REPORT_SAMPLES = 3  # melodies written with the report


def evaluate_run(
  workdir: str,
  *,
  step: str | int = "latest",
  output_dir: str | None = None,
  num_samples: int = 100,
  num_notes: int = 256,
  temperature: float = 1.0,
  max_order: int = ngram.MAX_ORDER,
  seed: int = 0,
  log: Callable[[str], None] = print,
  dataset_dir: str | None = None,
  midi_dir: str | None = None,
  memory: bool = False,
  short_term: tuple[float, float] = (0.0, 0.0),
  short_term_order: tuple[int, int] = request_lib.DEFAULT_SHORT_TERM_ORDERS,
) -> dict[str, Any]:
  """Scores a run on the test split, compares samples, writes report.md.

  `memory`: also the memories of the song (`evaluation.memory`);
  `short_term`, `short_term_order`: the generated melodies' (`Request`).

  With `dataset_dir` (a built dataset) or `midi_dir` (a MIDI folder), on
  another corpus than the run's, tokenized with its vocabularies
  (`cross.load_corpus`; the report goes to `WORKDIR/cross/NAME` unless
  `output_dir` says otherwise).

  Returns:
    {"model": scores, "vs_best_baseline": the model's bits per note over
    the best baseline's given the same information (for a conditioned run
    the labelled baselines', `labelled`; then also
    "vs_best_baseline_without_labels"), "baseline_labels": [kinds],
    "labelled_baselines": scores or None, "baselines": scores without
    labels, "ngram", "orders", "statistics", "copying", "memory", "report":
    path, "corpus": None or {"dataset", "midi_dir", "given", ...}}.
  """
  start = time.perf_counter()
  run = runs.from_workdir(workdir, step)
  dataset, corpus, output_dir = _evaluation_data(
    run, output_dir, dataset_dir, midi_dir, log
  )
  os.makedirs(output_dir, exist_ok=True)
  log(f"step {run.step}: scoring {len(dataset.test.originals())} test songs")
  model_scores = predict.score_split(run, "test", dataset)
  fitted = fit_baselines(dataset, run.model.config.conditions, max_order)
  log(f"generating {num_samples} melodies of up to {num_notes} notes")
  request = request_lib.Request(
    num_outputs=num_samples,
    num_notes=num_notes,
    temperature=temperature,
    seed=seed,
    short_term=short_term,
    short_term_order=short_term_order,
  )
  melodies = generate.generate(run, request)
  comparison = compare_with_corpus(
    melodies,
    dataset,
    corpus and (lambda split: cross.corpus_songs(corpus.dataset, split)),
    time_signature=plan.make_plan(run, request).time_signature,
  )
  result = _result(run, model_scores, fitted, comparison, corpus)
  result["memory"] = memory and _memory(run, dataset, fitted, log)
  figures = _write_figures(run, output_dir, melodies, request, comparison)
  result["report"] = os.path.join(output_dir, workdir_lib.REPORT_FILE)
  files.write_text(
    result["report"],
    _markdown(run, request, result, comparison, figures, output_dir),
  )
  result["seconds"] = time.perf_counter() - start
  files.write_json(
    os.path.join(output_dir, workdir_lib.EVALUATION_FILE),
    # A statistic of no data (the KL of an empty histogram) is NaN: null
    # in the file, which stays strict JSON.
    files.finite_or_null(result),
  )
  if os.path.abspath(output_dir) == run.workdir:
    page.write_page(run.workdir)
  return result


def _memory(run, dataset, fitted, log) -> dict[str, Any]:
  log("the memories of the song: tuning on validation, scoring on test")
  return memory_lib.score_run(
    run, dataset, fitted.plain, same_information_best(fitted)["bits_per_note"]
  )


def _evaluation_data(run, output_dir, dataset_dir, midi_dir, log):
  """(dataset, other corpus or None, output folder) of an evaluation: the
  run's own dataset, or another corpus tokenized with its vocabularies."""
  if dataset_dir is None and midi_dir is None:
    return predict.load_dataset_of(run), None, output_dir or run.workdir
  log("tokenizing the other corpus with the run's vocabularies (cached)")
  corpus = cross.load_corpus(run, dataset_dir=dataset_dir, midi_dir=midi_dir)
  log(cross.format_unknown(corpus.unknown))
  output_dir = output_dir or os.path.join(
    run.workdir, cross.CROSS_FOLDER, corpus.name
  )
  return corpus.dataset, corpus, output_dir


@dataclasses.dataclass(frozen=True)
class FittedBaselines:
  """The baselines of an evaluation and their test scores.

  Attributes:
    plain: `baselines.fit`'s result (no labels).
    scores: {baseline: test scores} of `plain`.
    labelled: `labelled.fit`'s result, given the labels the run reads
      (None for an unconditioned run).
    labelled_scores: {baseline: test scores} of `labelled` (or None).
  """

  plain: baselines.Fitted
  scores: dict[str, dict[str, float]]
  labelled: labelled_lib.Fitted | None = None
  labelled_scores: dict[str, dict[str, float]] | None = None


def fit_baselines(
  dataset: dataset_lib.Dataset,
  kinds: Sequence[str] = (),
  max_order: int = ngram.MAX_ORDER,
  split: str = "test",
) -> FittedBaselines:
  """The baselines without labels and, for the label kinds a run reads
  (`ModelConfig.conditions`; none: an unconditioned run), with them."""
  plain = baselines.fit(dataset, max_order=max_order)
  scores = baselines.score(dataset, plain, split)
  if not kinds:
    return FittedBaselines(plain, scores)
  given = labelled_lib.fit(dataset, plain, kinds)
  return FittedBaselines(
    plain, scores, given, labelled_lib.score(dataset, given, split)
  )


def same_information_best(fitted: FittedBaselines) -> dict[str, float]:
  """The best baseline's test scores given what the run is given (the
  labelled baselines' for a conditioned run)."""
  if fitted.labelled is None:
    return fitted.scores[fitted.plain.best]
  return fitted.labelled_scores[fitted.labelled.best]


def _ratios(model_scores, fitted: FittedBaselines) -> dict[str, float]:
  """The headline: the model's bits over the best baseline's given the
  same information, and for a conditioned run the old ratio too."""
  bits = model_scores["bits_per_note"]
  plain = bits / fitted.scores[fitted.plain.best]["bits_per_note"]
  if fitted.labelled is None:
    return {"vs_best_baseline": plain}
  return {
    "vs_best_baseline": bits / same_information_best(fitted)["bits_per_note"],
    "vs_best_baseline_without_labels": plain,
  }


def _result(run, model_scores, baseline_fit, comparison, corpus):
  """evaluation.json's content, without the report's path and the time."""
  fitted, given = baseline_fit.plain, baseline_fit.labelled
  return {
    "step": run.step,
    "model": model_scores,
    **_ratios(model_scores, baseline_fit),
    "baseline_labels": list(given.kinds) if given else [],
    "labelled_baselines": baseline_fit.labelled_scores,
    "labelled_baseline_settings": given and given.settings(),
    "baselines": baseline_fit.scores,
    "best_baseline": fitted.best,
    "ngram": baseline_fit.scores["ngram"],
    "orders": {s: fitted.ngram[s]["order"] for s in tokens.STREAMS},
    "baseline_settings": {
      "short_term_order": dict(fitted.short_term_order),
      "idyom_bias": dict(fitted.bias),
      "idyom_votes": dict(fitted.votes),
      "mixture_weights": {
        s: list(w) for s, w in fitted.mixture_weights.items()
      },
      "best_of_stream": dict(fitted.best_of_stream),
      "valid_bits_per_note": {
        name: scores["bits_per_note"] for name, scores in fitted.valid.items()
      },
    },
    "statistics": comparison["statistics"],
    "reference_statistics": comparison["reference_statistics"],
    "repetition": comparison["repetition"],
    "copying": comparison["copying"],
    "corpus": corpus
    and {
      "dataset": corpus.dataset.path,
      "midi_dir": corpus.midi_dir,
      "given": corpus.given,
      "unknown_tokens": corpus.unknown,
    },
  }


def compare_with_corpus(
  melodies: Sequence[Sequence[Event]],
  dataset: dataset_lib.Dataset,
  songs: Callable[[str], list[list[Event]]] | None = None,
  time_signature: tuple[int, int] = stats.DEFAULT_SIGNATURE,
) -> dict[str, Any]:
  """Statistics of generated melodies against the training songs, the test
  songs against the same (the reference), the repetition of generated
  melodies beside the test songs', and the copying check.

  `songs(split)` gives a split's songs (default: `stats.corpus_melodies`,
  which leaves out songs with an unk token; another corpus's come from its
  token export, `cross.corpus_songs`, unk tokens and all). Corpus bars come
  from the dataset's bar positions (`stats.corpus_bar_positions`); the
  generated melodies' are bars of `time_signature` from their first event.
  """
  own = songs is None
  songs = songs or (lambda split: stats.corpus_melodies(dataset, split)[0])
  train_songs, test_songs = songs("train"), songs("test")
  generated = stats.compute_statistics(melodies, time_signature=time_signature)
  train = stats.compute_statistics(
    train_songs, _positions(dataset, "train", train_songs, own)
  )
  test = stats.compute_statistics(
    test_songs, _positions(dataset, "test", test_songs, own)
  )
  copied = np.array(stats.longest_copied_run(melodies, train_songs))
  copied_test = np.array(stats.longest_copied_run(test_songs, train_songs))
  return {
    "generated": generated,
    "train": train,
    "test": test,
    "num_train_songs": len(train_songs),
    "num_test_songs": len(test_songs),
    "statistics": stats.compare(generated, train),
    "reference_statistics": stats.compare(test, train),
    "repetition": stats.compare_repetition(generated, test),
    "copying": {
      "generated_median": float(np.median(copied)),
      "generated_max": int(copied.max()),
      "generated_mean_length": float(np.mean([len(m) for m in melodies])),
      "test_median": float(np.median(copied_test)),
      "test_max": int(copied_test.max()),
    },
  }


def _positions(dataset, split, songs, own: bool):
  """The dataset's bar positions of `songs` (its own, unk songs left out,
  or another corpus's export, every original), or None (4/4 bars from
  each song's start) where they do not line up event for event."""
  positions = stats.corpus_bar_positions(dataset, split, skip_unk=own)
  if len(positions) != len(songs) or any(
    p is not None and len(p) != len(song)
    for p, song in zip(positions, songs, strict=True)
  ):
    return None
  return positions


def _write_figures(run, output_dir, melodies, request, comparison) -> dict:
  """curves.png (if metrics exist), histograms.png, a few samples and a
  preview WAV; returns {"curves": bool, "samples": [MIDI paths]}."""
  curves = plots.curves_png(
    metrics_lib.read_metrics(run.workdir), [page.BITS_PANEL]
  )
  if curves is not None:
    files.write_bytes(os.path.join(output_dir, "curves.png"), curves)
  plots.save_histograms(
    comparison["generated"],
    comparison["train"],
    os.path.join(output_dir, "histograms.png"),
  )
  samples = outputs.write_outputs(
    melodies[:REPORT_SAMPLES],
    os.path.join(output_dir, "report_samples"),
    step=run.step,
    workdir=run.workdir,
    request=request,
  )
  audio.synthesize(melodies[0], os.path.join(output_dir, "preview.wav"))
  return {"curves": curves is not None, "samples": samples}


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    cells = [f"{c:.3f}" if isinstance(c, float) else str(c) for c in row]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _corpus_lines(corpus: dict[str, Any] | None) -> list[str]:
  """The paragraph of a cross-corpus report (nothing for the run's own)."""
  if corpus is None:
    return []
  lines = [
    f"Cross-corpus: the songs of `{corpus['midi_dir']}` (asked: "
    f"`{corpus['given']}`), tokenized with this run's vocabularies, key "
    f"setting and grid into `{corpus['dataset']}`; the baselines are "
    "fitted on its training split. Tokens the run never saw are unk, for "
    "the model and the baselines alike:",
    "",
    _table(
      [
        (
          stream,
          u["count"],
          u["events"],
          f"{100 * u['share']:.2f}%",
          ", ".join(f"{t} ({c})" for t, c in u["most_common"].items()) or "-",
        )
        for stream, u in corpus["unknown_tokens"].items()
      ],
      ("stream", "unk events (test)", "events", "share", "most common"),
    ),
    "",
  ]
  return lines


def _markdown(run, request, result, comparison, figures, output_dir) -> str:
  lines = [
    f"# Evaluation of {run.workdir} at step {run.step}",
    "",
    *_corpus_lines(result["corpus"]),
    *_score_lines(result),
    *_sample_lines(request, result, comparison),
    *_repetition_lines(result, comparison),
    *memory_lib.report_lines(result.get("memory")),
  ]
  if figures["curves"]:
    lines += ["![curves](curves.png)", ""]
  lines += ["![histograms](histograms.png)", ""]
  for path in figures["samples"]:
    roll = os.path.relpath(path[: -len(".mid")] + ".png", output_dir)
    lines += [f"![{os.path.basename(path)}]({roll})", ""]
  lines += [
    "Listen: [preview.wav](preview.wav) (the first sample, a simple "
    "synthesizer); MIDI files in `report_samples/`.",
    "",
  ]
  return "\n".join(lines)


def _score_lines(result) -> list[str]:
  """The test split's scores, the model against every baseline: given the
  run's labels first (a conditioned run), then without them."""
  model = result["model"]
  settings = result["baseline_settings"]
  lines = [
    f"Test split: {model['num_targets']} targets (every event and eos "
    "of every test song, each predicted from its start). Baselines, each "
    "per stream with its settings chosen on validation: `ngram`, "
    "interpolated modified Kneser-Ney fitted on the training songs (orders "
    f"{result['orders']['pitch']} pitch, {result['orders']['duration']} "
    "duration); `short_term`, PPM-C fitted on the song being predicted as "
    f"it goes (orders {settings['short_term_order']['pitch']} and "
    f"{settings['short_term_order']['duration']}); `idyom`, IDyOM's "
    "entropy-weighted combination of the two (the long-term model's votes "
    "chosen too); `mixture`, the two mixed linearly, a weight per band of "
    "the short-term model's entropy; `best`, per stream the one "
    "best on validation.",
    "",
  ]
  given = result["labelled_baseline_settings"]
  if given is None:
    return lines + _baseline_table(model, result["baselines"], settings)
  kinds = ", ".join(given["labels"])
  weights = "; ".join(
    f"{stream} "
    + ", ".join(
      f"{name} {w:.1f}"
      for name, w in zip(("general", *given["components"]), ws, strict=True)
    )
    for stream, ws in given["weights"].items()
  )
  best = result["labelled_baselines"]["best"]["bits_per_note"]
  plain = result["baselines"]["best"]["bits_per_note"]
  return [
    *lines,
    f"The model reads {kinds}; so do the first baselines "
    "(`evaluation.labelled`): their long-term model mixes the general "
    "n-gram with one fitted on the training events of each label (a label "
    "unseen or rare in training: the general one), weights chosen on "
    f"validation ({weights}); their `idyom` combines every long-term "
    "model (the mixture, the general one, each label's) with the "
    "short-term one.",
    "",
    _table(
      [
        (
          f"best baseline given the same labels ({kinds})",
          model["bits_per_note"],
          best,
          f"{result['vs_best_baseline']:.3f}x",
        ),
        (
          "best baseline without labels",
          model["bits_per_note"],
          plain,
          f"{result['vs_best_baseline_without_labels']:.3f}x",
        ),
      ],
      ("comparison", "model", "baseline", "model / baseline"),
    ),
    "",
    f"Given the labels ({kinds}):",
    "",
    *_baseline_table(model, result["labelled_baselines"], given),
    "Without labels:",
    "",
    *_baseline_table(model, result["baselines"], settings),
  ]


def _baseline_table(model, scores, settings) -> list[str]:
  """Every metric of the model and each baseline, and which model `best`
  takes per stream."""
  rows = [
    (
      label,
      model[key],
      *(scores[name][key] for name in baselines.NAMES),
      model[key] - scores["best"][key],
    )
    for key, label in SCORE_ROWS
  ]
  best_of = settings["best_of_stream"]
  bias = settings["idyom_bias"]
  return [
    _table(rows, ("metric", "model", *baselines.NAMES, "model - best")),
    "",
    f"`best`: {best_of['pitch']} for pitch, {best_of['duration']} for "
    f"duration; IDyOM's bias {bias['pitch']} and {bias['duration']}.",
    "",
  ]


REPETITION_ROWS = (
  ("bar_repeats", "bar repeats, exact"),
  ("bar_repeats_transposed", "bar repeats, transposed"),
  ("pattern_repeats", "4-event patterns heard before"),
)


def _repetition_lines(result, comparison) -> list[str]:
  """Within-song repetition: the samples beside the test songs."""
  repetition = result["repetition"]
  percent = round(100 * stats.REPETITION_TOLERANCE)
  rows = [
    (
      label,
      repetition[name]["generated"],
      repetition[name]["corpus"],
      repetition[name]["ratio"],
      "yes" if repetition[name]["within"] else "no",
    )
    for name, label in REPETITION_ROWS
  ]
  return [
    "## Repetition",
    "",
    "Mean per song: the share of bars, after the first, that repeat an "
    "earlier bar of the same song (exactly, or transposed), and the share "
    "of 4-event patterns (pitch and duration), after the first, heard "
    f"earlier in the same song; samples against the "
    f"{comparison['num_test_songs']} test songs (their bars from the "
    "dataset; the samples' from the time signature they were sampled in). "
    "Longer melodies have more chances to repeat.",
    "",
    _table(
      rows,
      ("feature", "samples", "test songs", "ratio", f"within {percent}%"),
    ),
    "",
  ]


def _sample_lines(request, result, comparison) -> list[str]:
  """The samples' statistics against the corpus, and the copying check."""
  reference = result["reference_statistics"]
  stat_rows = [
    (
      name,
      s["overlap"],
      s["kl"],
      reference[name]["overlap"],
      reference[name]["kl"],
    )
    for name, s in result["statistics"].items()
  ]
  generated, train = comparison["generated"], comparison["train"]
  copying = result["copying"]
  temperature = request.temperature[0]
  return [
    f"## Samples: {request.num_outputs} melodies (temperature {temperature}, "
    f"seed {request.seed}) against the {comparison['num_train_songs']} "
    "training songs",
    "",
    "Overlapping area (1 = same distribution) and KL(generated || corpus); "
    "the test songs against the same training songs give the reference.",
    "",
    _table(stat_rows, ("feature", "overlap", "KL", "test overlap", "test KL")),
    "",
    f"Notes in key: {generated['in_key_share']:.3f} generated, "
    f"{train['in_key_share']:.3f} corpus. Repeated notes: "
    f"{generated['repeated_share']:.3f} generated, "
    f"{train['repeated_share']:.3f} corpus. Mean length "
    f"{copying['generated_mean_length']:.1f} events.",
    "",
    "Copying: longest run of events (pitch and duration) that also occurs in "
    f"a training song: median {copying['generated_median']:.0f}, max "
    f"{copying['generated_max']} for generated melodies; median "
    f"{copying['test_median']:.0f}, max {copying['test_max']} for test songs.",
    "",
  ]
