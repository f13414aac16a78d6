"""Cross-corpus evaluation: a tiny run scored on a folder it never saw."""

import json
import os
import types
from fractions import Fraction as F

import numpy as np
import pytest

from melodyjax import errors
from melodyjax.data import build
from melodyjax.data import config as data_config_lib
from melodyjax.evaluation import baselines, cross, predict
from melodyjax.evaluation import report as evaluation
from melodyjax.music import midi_io, tokens
from melodyjax.music.events import Event, Song
from melodyjax.training import runs

SCALE = (60, 62, 64, 65, 67, 69, 71, 72)  # what the tiny run was trained on
UNSEEN_PITCH, UNSEEN_DURATION = 66, F(1, 3)  # F#4 and a triplet
LENGTH = 12


def other_tune(i):
  """A C major tune with F#4 at every 5th event and 1/3 at j % 4 == 1."""
  events = [
    Event(
      (UNSEEN_PITCH if j % 5 == 0 else SCALE[(i + 2 * j) % 8],),
      UNSEEN_DURATION if j % 4 == 1 else F(1, 2),
    )
    for j in range(LENGTH)
  ]
  return Song(events, key_signature="C")


@pytest.fixture(scope="module")
def other(tmp_path_factory):
  """A folder of 30 tunes with tokens the run never saw."""
  folder = tmp_path_factory.mktemp("other") / "reels"
  folder.mkdir()
  for i in range(30):
    midi_io.write_midi(other_tune(i), folder / f"r{i:02d}.mid")
  return folder


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
  """The dataset cache of each test in its own folder."""
  monkeypatch.setenv("MELODYJAX_CACHE", str(tmp_path / "cache"))
  return tmp_path / "cache"


def test_scores_another_folder_with_the_runs_vocabularies(
  workdir, other, cache
):
  before = [p for p in os.listdir(workdir) if p != "cross"]
  stamps = {p: (workdir / p).stat().st_mtime_ns for p in before}
  result = evaluation.evaluate_run(
    str(workdir), midi_dir=str(other), num_samples=2, num_notes=16, log=print
  )
  run = runs.from_workdir(str(workdir))
  corpus = cross.load_corpus(run, midi_dir=str(other))
  dataset = corpus.dataset
  # Tokenized with the run's vocabularies, cached below the dataset cache.
  assert dataset.pitch_vocab.tokens == run.pitch_vocab.tokens
  assert dataset.duration_vocab.tokens == run.duration_vocab.tokens
  assert dataset.path.startswith(str(cache / "datasets" / "cross"))
  # By hand: 3 unseen pitches and 3 unseen durations in each test tune.
  test = list(dataset.test.sources)
  assert test, "the fixture needs a test song"
  unknown = result["corpus"]["unknown_tokens"]
  assert unknown["pitch"]["count"] == 3 * len(test)
  assert unknown["duration"]["count"] == 3 * len(test)
  assert unknown["pitch"]["events"] == LENGTH * len(test)
  assert unknown["pitch"]["share"] == pytest.approx(3 / LENGTH)
  assert unknown["pitch"]["most_common"] == {"F#4": 3 * len(test)}
  assert unknown["duration"]["most_common"] == {"1/3": 3 * len(test)}
  test_ids = dataset.test.pitch
  assert int(np.sum(test_ids == tokens.UNK_ID)) == 3 * len(test)
  # The model and the baselines on the same targets of the same songs.
  model = result["model"]
  assert model["num_targets"] == (LENGTH + 1) * len(test)
  for name in baselines.NAMES:
    assert result["baselines"][name]["num_targets"] == model["num_targets"]
  assert model == pytest.approx(predict.score_split(run, "test", dataset))
  fitted = baselines.fit(dataset)
  assert result["baselines"]["best"] == pytest.approx(
    baselines.score(dataset, fitted)["best"]
  )
  # The report of the other corpus is in WORKDIR/cross/NAME; the run's own
  # files are untouched.
  report = workdir / "cross" / "reels" / "report.md"
  text = report.read_text()
  assert result["report"] == str(report)
  assert "Cross-corpus" in text and "F#4 (" in text and "1/3 (" in text
  saved = json.loads((report.parent / "evaluation.json").read_text())
  assert saved["corpus"]["midi_dir"] == str(other)
  assert set(os.listdir(workdir)) - set(before) == {"cross"}
  assert {p: (workdir / p).stat().st_mtime_ns for p in before} == stamps


def test_cache_is_reused_and_dataset_dir_gives_the_same_scores(
  workdir, other, tmp_path
):
  run = runs.from_workdir(str(workdir))
  first = cross.load_corpus(run, midi_dir=str(other))
  manifest = os.path.join(first.dataset.path, "manifest.json")
  stamp = os.stat(manifest).st_mtime_ns
  again = cross.load_corpus(run, midi_dir=str(other))
  assert os.stat(manifest).st_mtime_ns == stamp  # loaded, not rebuilt
  # The same folder built on its own (its own vocabularies) as --dataset_dir.
  config = data_config_lib.CorpusConfig.from_config(run.config.data)
  own = build.build_dataset(other, tmp_path / "own", config, progress=False)
  assert own.pitch_vocab.tokens != run.pitch_vocab.tokens
  built = cross.load_corpus(run, dataset_dir=str(tmp_path / "own"))
  assert built.dataset.path == again.dataset.path
  assert predict.score_split(run, "test", built.dataset) == pytest.approx(
    predict.score_split(run, "test", first.dataset)
  )


def test_the_runs_own_dataset_is_its_own_evaluation(workdir):
  run = runs.from_workdir(str(workdir))
  corpus = cross.load_corpus(run, dataset_dir=run.config.data.dataset_dir)
  assert corpus.dataset.path == os.path.abspath(run.config.data.dataset_dir)
  assert corpus.unknown["pitch"]["count"] == 0
  assert predict.score_split(run, "test", corpus.dataset) == pytest.approx(
    predict.score_split(run, "test")
  )


@pytest.mark.parametrize(
  ("field", "value", "message"),
  [
    ("normalize_key", False, "normalize_key=False (as written)"),
    ("grid", 24, "grid=24"),
  ],
)
def test_a_dataset_of_other_settings_is_refused(
  workdir, other, tmp_path, field, value, message
):
  run = runs.from_workdir(str(workdir))
  config = data_config_lib.CorpusConfig.from_config(
    {**dict(run.config.data), field: value}
  )
  build.build_dataset(other, tmp_path / "d", config, progress=False)
  with pytest.raises(errors.UsageError) as e:
    cross.load_corpus(run, dataset_dir=str(tmp_path / "d"))
  assert message in str(e.value) and f"config.data.{field}=" in str(e.value)
  assert "\n" not in str(e.value)


def test_a_folder_too_small_to_split_is_refused(workdir, tmp_path):
  run = runs.from_workdir(str(workdir))
  folder = tmp_path / "one"
  folder.mkdir()
  midi_io.write_midi(other_tune(0), folder / "a.mid")
  with pytest.raises(errors.CorpusError, match="too few songs to score"):
    cross.load_corpus(run, midi_dir=str(folder))


def test_bench_baselines_table_of_own_and_cross_rows(workdir, other, tmp_path):
  from benchmarks import bench_baselines

  run = runs.from_workdir(str(workdir), "best")
  datasets = tmp_path / "datasets"
  datasets.mkdir()
  os.symlink(os.path.abspath(run.config.data.dataset_dir), datasets / "esac")
  config = data_config_lib.CorpusConfig.from_config(run.config.data)
  build.build_dataset(other, datasets / "oneills", config, progress=False)
  args = types.SimpleNamespace(
    run=[f"esac_norm:plain={workdir}"],
    cross=[f"oneills_norm:plain={workdir}"],
    datasets=str(datasets),
  )
  cache = {"path": str(tmp_path / "cache.json"), "entries": {}}
  rows, columns = bench_baselines.score_rows(args, cache)
  assert columns == ["plain"]
  # O'Neill's own row has baselines and no run.
  assert [r["key"] for r in rows] == [
    "esac_norm",
    "oneills_norm",
    "oneills_norm_by_run",
  ]
  own, alone, crossed = rows
  assert alone["models"] == {}
  assert own["models"]["plain"] == pytest.approx(
    predict.score_split(run, "test")
  )
  dataset = predict.load_dataset_of(run)
  assert own["baselines"]["best"] == pytest.approx(
    baselines.score(dataset, baselines.fit(dataset))["best"]
  )
  # The cross row: the folder in the run's tokens, its unk counted.
  assert crossed["unknown"]["duration"]["most_common"].keys() == {"1/3"}
  assert (
    crossed["models"]["plain"]["num_targets"]
    == (crossed["baselines"]["best"]["num_targets"])
  )
  text = bench_baselines.markdown(rows, columns)
  best = own["baselines"]["best"]["bits_per_note"]
  ratio = own["models"]["plain"]["bits_per_note"] / best
  assert f"{ratio:.3f}x" in text and "ESAC key-normalised" in text
  # A rerun reads every score from the cache.
  saved = json.loads((tmp_path / "cache.json").read_text())
  assert len(saved) == 5  # three datasets' baselines, two model scores
  again = {"path": cache["path"], "entries": saved}
  calls = []
  original = baselines.fit
  baselines.fit = lambda *a, **k: calls.append(a) or original(*a, **k)
  try:
    assert bench_baselines.score_rows(args, again)[0] == rows
  finally:
    baselines.fit = original
  assert not calls
