"""The baselines given the labels a conditioned run reads."""

import dataclasses
import json
import math
import os
import shutil
import types
from fractions import Fraction as F

import numpy as np
import pytest

from melodyjax.evaluation import baselines, labelled
from melodyjax.evaluation import report as evaluation
from melodyjax.listening import page
from melodyjax.music import midi_io
from melodyjax.music.events import Event, Song
from tests.helpers import small_dataset, tiny_config, train

MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]
MINOR = [57, 59, 60, 62, 64, 65, 68, 69]  # A harmonic minor


def walk(scale, seed, key, time_signature):
  """A random walk on `scale`: the scale is all that the label decides."""
  rng = np.random.default_rng(seed)
  j, events = 0, []
  for _ in range(16):
    j = int(np.clip(j + rng.choice([-2, -1, 1, 2]), 0, 7))
    events.append(Event((scale[j],), F(int(rng.choice([1, 2])), 2)))
  events.append(Event((scale[0],), F(2)))
  return Song(events, time_signature=time_signature, key_signature=key)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """40 major 4/4 walks in `major/`, 40 minor 3/4 ones in `minor/`."""
  root = tmp_path_factory.mktemp("labelled")
  for folder, scale, key, signature, seed in (
    ("major", MAJOR, "C", (4, 4), 0),
    ("minor", MINOR, "Am", (3, 4), 1000),
  ):
    (root / "midi" / folder).mkdir(parents=True)
    for i in range(40):
      song = walk(scale, seed + i, key, signature)
      midi_io.write_midi(song, root / "midi" / folder / f"s{i:02d}.mid")
  return root


@pytest.fixture(scope="module")
def dataset(corpus):
  return small_dataset(corpus / "midi", corpus / "data")


@pytest.fixture(scope="module")
def general(dataset):
  return baselines.fit(dataset, max_order=3)


def test_the_mode_given_beats_the_baselines_without_it(dataset, general):
  assert set(dataset.labels.mode.known) == {"major", "minor"}
  plain = baselines.score(dataset, general)
  fitted = labelled.fit(dataset, general, ("mode",), min_targets=20)
  given = labelled.score(dataset, fitted)
  assert given["best"]["num_targets"] == plain["best"]["num_targets"]
  # The scale is the label's: the pitch stream gains, on test too.
  gain = (
    plain["best"]["bits_per_note_pitch"] - given["best"]["bits_per_note_pitch"]
  )
  assert gain > 0.1
  assert given["best"]["bits_per_note"] < plain["best"]["bits_per_note"]
  assert fitted.weights["pitch"][1] > 0
  assert dict(fitted.settings()["labels_with_a_model"]["pitch"]) == {"mode": 2}
  # The short-term model reads no label.
  assert given["short_term"] == pytest.approx(plain["short_term"])


def test_weights_minimise_validation_bits_on_the_grid(dataset, general):
  fitted = labelled.fit(dataset, general, ("mode", "style"), min_targets=20)
  assert fitted.components == (("mode",), ("style",), ("mode", "style"))
  grid = labelled.weight_grid(4)
  assert len(grid) == math.comb(10 + 3, 3)
  assert all(sum(w) == pytest.approx(1) for w in grid)
  assert all(round(x * 10) == pytest.approx(x * 10) for w in grid for x in w)
  for stream in ("pitch", "duration"):
    _, probs, targets = labelled.long_term_distributions(
      dataset,
      general,
      fitted.components,
      fitted.models[stream],
      stream,
      "valid",
    )
    assert probs.shape == (4, len(targets))
    bits = {w: -np.mean(np.log2(np.array(w) @ probs)) for w in grid}
    assert fitted.weights[stream] in grid
    assert bits[fitted.weights[stream]] == pytest.approx(min(bits.values()))
  # The labels say something: not all the weight on the general model.
  assert fitted.weights["pitch"][0] < 1


def _relabelled(split, mode):
  return dataclasses.replace(split, mode=np.full(len(split), mode))


def test_unseen_and_unknown_labels_back_off_to_the_general_model(
  dataset, general
):
  fitted = labelled.fit(dataset, general, ("mode",), min_targets=20)
  assert fitted.weights["pitch"][1] > 0
  model = general.ngram["pitch"]["model"]
  songs = [dataset.test.song(i)[0] for i in dataset.test.originals()]
  expected, _ = model.distributions(songs)
  for mode in (0, 7):  # unknown; an id no training song has
    splits = {**dataset.splits, "test": _relabelled(dataset.test, mode)}
    other = dataclasses.replace(dataset, splits=splits)
    _, mixed, _ = labelled.long_term_distributions(
      other,
      general,
      fitted.components,
      fitted.models["pitch"],
      "pitch",
      "test",
      fitted.weights["pitch"],
    )
    np.testing.assert_allclose(mixed, expected, rtol=1e-12, atol=1e-15)
  # A label of too few training songs has no model of its own either.
  sparse = labelled.fit(dataset, general, ("mode",), min_targets=10**6)
  assert sparse.models["pitch"] == {"mode": {}}
  assert labelled.score(dataset, sparse)["ngram"] == pytest.approx(
    baselines.score(dataset, general)["ngram"]
  )


def test_bar_positions_and_signatures_label_every_target(dataset):
  test = dataset.test
  rows = test.originals()
  targets = int(np.sum(np.diff(test.offsets)[rows] + 1))
  signature = labelled.target_labels(test, "time_signature", rows)
  position = labelled.target_labels(test, "bar_position", rows)
  mode = labelled.target_labels(test, "mode", rows)
  assert len(signature) == len(position) == len(mode) == targets
  assert np.all(signature > 0) and np.all(mode > 0)
  # One label per position within each time signature; unknown is 0.
  assert np.all((position > 0) == (signature > 0))
  first = test.offsets[rows[0]]
  assert position[0] == (signature[0] * 2**20 + test.bar_position[first] + 1)
  split = dataclasses.replace(
    test,
    bar_position=np.full_like(test.bar_position, -1),
    end_position=np.full_like(test.end_position, -1),
  )
  assert not labelled.target_labels(split, "bar_position", rows).any()
  with pytest.raises(ValueError, match="label kinds"):
    labelled.components_of(("tempo",))


def test_a_conditioned_run_is_compared_with_the_same_labels(corpus, tmp_path):
  config = tiny_config(corpus / "midi", corpus / "data")
  config.model.condition_metre = True
  config.model.condition_mode = True
  config.model.condition_style = True
  config.train.num_train_steps = 10
  train(config, tmp_path / "run")
  out = tmp_path / "report"
  evaluation.evaluate_run(
    str(tmp_path / "run"),
    output_dir=str(out),
    num_samples=4,
    num_notes=24,
    max_order=3,
    log=lambda message: None,
  )
  saved = json.loads((out / "evaluation.json").read_text())
  kinds = ["time_signature", "bar_position", "mode", "style"]
  assert saved["baseline_labels"] == kinds
  bits = saved["model"]["bits_per_note"]
  given = saved["labelled_baselines"]["best"]["bits_per_note"]
  plain = saved["baselines"]["best"]["bits_per_note"]
  assert saved["vs_best_baseline"] == pytest.approx(bits / given)
  assert saved["vs_best_baseline_without_labels"] == pytest.approx(bits / plain)
  assert given < plain  # the labels decide the scale and the metre
  settings = saved["labelled_baseline_settings"]
  assert settings["labels"] == kinds
  assert len(settings["weights"]["pitch"]) == 1 + len(settings["components"])
  report = (out / "report.md").read_text()
  assert "best baseline given the same labels" in report
  assert "| best baseline without labels |" in report
  assert f"{saved['vs_best_baseline']:.3f}x" in report
  assert "time_signature, bar_position, mode, style" in report
  # The audition page shows the same comparison.
  shutil.copy(out / "evaluation.json", tmp_path / "run" / "evaluation.json")
  with open(page.write_page(str(tmp_path / "run")), encoding="utf-8") as f:
    html = f.read()
  assert "given the model's labels (time_signature, bar_position" in html
  assert f"{given:.3f}" in html
  # benchmarks/bench_baselines.py gives a conditioned run both ratios.
  from benchmarks import bench_baselines

  datasets = tmp_path / "datasets"
  datasets.mkdir()
  os.symlink(corpus / "data", datasets / "esac")
  args = types.SimpleNamespace(
    run=[f"esac_norm:conditioned={tmp_path / 'run'}"],
    cross=[],
    datasets=str(datasets),
  )
  cache = {"path": str(tmp_path / "cache.json"), "entries": {}}
  rows, columns = bench_baselines.score_rows(args, cache)
  (row,) = rows
  model_bits = row["models"]["conditioned"]["bits_per_note"]
  given = row["given"]["conditioned"]["best"]["bits_per_note"]
  plain = row["baselines"]["best"]["bits_per_note"]
  assert given < plain
  text = bench_baselines.markdown(rows, columns)
  assert f"{model_bits / given:.3f}x given its labels ({given:.3f})" in text
  assert f"{model_bits / plain:.3f}x without" in text
