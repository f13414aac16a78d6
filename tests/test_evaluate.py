"""Held-out scoring arithmetic and the evaluation report on a tiny run."""

import json
import os
import wave

import jax
import numpy as np
import pytest

from melodyjax.evaluation import memory as memory_eval
from melodyjax.evaluation import predict, scoring
from melodyjax.evaluation import report as evaluation
from melodyjax.listening import audio, stats
from melodyjax.music import tokens
from melodyjax.music.events import Event
from melodyjax.training import runs


def constant_model(run, pitch_probs, duration_probs):
  """The run's model with heads that always give these distributions."""
  params = jax.tree.map(np.asarray, run.params)
  for head, probs in (
    ("pitch_head", pitch_probs),
    ("duration_head", duration_probs),
  ):
    params[head]["kernel"] = np.zeros_like(params[head]["kernel"])
    params[head]["bias"] = np.log(np.asarray(probs, np.float32))
  return run.__class__(**{**run.__dict__, "params": params})


def test_bits_per_note_of_a_model_with_known_probabilities(workdir):
  run = runs.from_workdir(str(workdir))
  dataset = predict.load_dataset_of(run)
  rng = np.random.default_rng(0)
  pitch_probs = rng.dirichlet(np.ones(len(run.pitch_vocab)))
  duration_probs = rng.dirichlet(np.ones(len(run.duration_vocab)))
  fixed = constant_model(run, pitch_probs, duration_probs)
  scores = scoring.score_distributions(
    predict.model_distributions(fixed, dataset.test)
  )
  # By hand: every event and one eos per test song, each -log2 p(target).
  test = dataset.test
  targets = {"pitch": [], "duration": []}
  for i in range(len(test)):
    pitch, duration = test.song(i)
    targets["pitch"] += list(pitch) + [tokens.EOS_ID]
    targets["duration"] += list(duration) + [tokens.EOS_ID]
  expected_pitch = -np.mean(np.log2(pitch_probs[targets["pitch"]]))
  expected_duration = -np.mean(np.log2(duration_probs[targets["duration"]]))
  assert scores["num_targets"] == test.num_events + len(test)
  assert scores["bits_per_note_pitch"] == pytest.approx(expected_pitch, 1e-5)
  assert scores["bits_per_note_duration"] == pytest.approx(
    expected_duration, 1e-5
  )
  assert scores["bits_per_note"] == pytest.approx(
    expected_pitch + expected_duration, 1e-5
  )
  # Top-1 is the share of targets equal to the most likely token.
  best = np.argmax(pitch_probs)
  assert scores["top1_pitch"] == pytest.approx(
    np.mean(np.array(targets["pitch"]) == best)
  )
  assert scores["top5_pitch"] >= scores["top1_pitch"]


def test_report_on_a_tiny_run(workdir, tmp_path):
  result = evaluation.evaluate_run(
    str(workdir),
    output_dir=str(tmp_path),
    num_samples=6,
    num_notes=24,
    max_order=3,
    log=lambda message: None,
  )
  report = (tmp_path / "report.md").read_text()
  assert "| bits per note (both) |" in report
  for name in (
    "curves.png",
    "histograms.png",
    "preview.wav",
    "evaluation.json",
  ):
    assert (tmp_path / name).exists(), name
  assert "![curves](curves.png)" in report
  with wave.open(str(tmp_path / "preview.wav")) as f:
    assert f.getnframes() > 1000 and f.getframerate() == 22050
  assert set(result["statistics"]) >= {"pitch_class", "interval", "duration"}
  assert 0 <= result["statistics"]["pitch_class"]["overlap"] <= 1
  assert result["ngram"]["num_targets"] == result["model"]["num_targets"]
  # Every baseline under its own key, scored on the same targets; the best
  # is the lowest on validation.
  saved = json.loads((tmp_path / "evaluation.json").read_text())
  assert set(saved["baselines"]) == {
    "ngram",
    "short_term",
    "idyom",
    "mixture",
    "best",
  }
  for scores in saved["baselines"].values():
    assert scores["num_targets"] == result["model"]["num_targets"]
    assert scores["bits_per_note"] == pytest.approx(
      scores["bits_per_note_pitch"] + scores["bits_per_note_duration"]
    )
  valid = saved["baseline_settings"]["valid_bits_per_note"]
  assert saved["best_baseline"] == "best"
  assert valid["best"] == pytest.approx(min(valid.values()))
  best_of = saved["baseline_settings"]["best_of_stream"]
  for stream in ("pitch", "duration"):
    assert (
      saved["baselines"]["best"][f"bits_per_note_{stream}"]
      == (saved["baselines"][best_of[stream]][f"bits_per_note_{stream}"])
    )
  assert f"model - {saved['best_baseline']}" in report
  # Repetition: the samples beside the test songs, their bars from the
  # dataset's bar positions.
  assert "## Repetition" in report and "| bar repeats, exact |" in report
  assert set(saved["repetition"]) == set(stats.REPETITION)
  test_songs = stats.corpus_statistics(
    predict.load_dataset_of(runs.from_workdir(str(workdir))), "test"
  )
  corpus = stats.repetition_means(test_songs)
  for name, row in result["repetition"].items():
    assert set(row) == {"generated", "corpus", "ratio", "within"}
    assert row["corpus"] == pytest.approx(corpus[name]), name
    assert 0 <= row["generated"] <= 1, name
    assert row["within"] == (
      abs(row["generated"] - row["corpus"]) <= 0.25 * row["corpus"]
    )
    assert 0 <= result["statistics"][name]["overlap"] <= 1, name
  # An unconditioned run: the baselines get no labels either.
  assert saved["baseline_labels"] == [] and saved["labelled_baselines"] is None
  assert "vs_best_baseline_without_labels" not in saved
  assert saved["vs_best_baseline"] == pytest.approx(
    result["model"]["bits_per_note"]
    / saved["baselines"]["best"]["bits_per_note"]
  )
  assert "without labels" not in report
  mids = sorted(os.listdir(tmp_path / "report_samples"))
  assert any(name.endswith(".mid") for name in mids)


def test_report_with_the_memories_of_the_song(workdir, tmp_path):
  result = evaluation.evaluate_run(
    str(workdir),
    output_dir=str(tmp_path),
    num_samples=4,
    num_notes=16,
    max_order=3,
    log=lambda message: None,
    memory=True,
    short_term=(0.3, 0.2),
    short_term_order=(3, 2),
  )
  memory = json.loads((tmp_path / "evaluation.json").read_text())["memory"]
  assert list(memory["scores"]) == [
    "+".join(combo) or "none" for combo in memory_eval.combinations()
  ]
  assert memory["scores"]["none"]["bits_per_note"] == pytest.approx(
    result["model"]["bits_per_note"], 1e-5
  )  # whole test songs, as the headline scores them
  best = result["baselines"][result["best_baseline"]]["bits_per_note"]
  for name, scores in memory["scores"].items():
    assert memory["vs_best_baseline"][name] == pytest.approx(
      scores["bits_per_note"] / best
    )
  assert set(memory["settings"]["joint"]) == {"pitch", "duration"}
  report = (tmp_path / "report.md").read_text()
  assert "## Memory of the song" in report and "| cache+stm |" in report
  sidecar = json.loads(
    next((tmp_path / "report_samples").glob("*.json")).read_text()
  )
  assert sidecar["short_term"] == [0.3, 0.2]
  assert sidecar["short_term_order"] == [3, 2]


def test_synthesize_length_matches_the_events(tmp_path):
  events = [
    Event((60,), 1),
    Event((), 1),
    Event((64, 67), 2),
  ]
  path = tmp_path / "a.wav"
  audio.synthesize(events, str(path), tempo_bpm=120, sample_rate=8000)
  with wave.open(str(path)) as f:
    seconds = f.getnframes() / f.getframerate()
  assert seconds == pytest.approx(4 * 0.5 + 0.5, abs=0.01)
