"""Fine-tuning: start from a trained run's parameters on a new corpus."""

import json
from fractions import Fraction as F

import jax
import numpy as np
import pytest

from melodyjax import errors
from melodyjax.cli import export
from melodyjax.music import midi_io
from melodyjax.music.events import Event, Song
from melodyjax.training import loop
from melodyjax.training import workdir as workdir_lib
from tests.helpers import final_params, tiny_config, write_tunes


def finetune_config(tmp_path, base, **overrides):
  midi = write_tunes(tmp_path / "new_midi", 25, 5, name="x{:02d}.mid")
  config = tiny_config(midi, tmp_path / "new_data")
  config.init_from = str(base)
  for key, value in overrides.items():
    group, _, field = key.rpartition(".")
    (config[group] if group else config)[field] = value
  return config


def test_training_starts_from_the_base_parameters(workdir, tmp_path):
  lines = []
  config = finetune_config(
    tmp_path,
    workdir,
    **{"train.num_train_steps": 1, "train.learning_rate": 1e-9},
  )
  loop.train_and_evaluate(config, str(tmp_path / "ft"), announce=lines.append)
  assert any(f"fine-tuning from {workdir} at step 10" in line for line in lines)
  base, _ = final_params(workdir)
  tuned, data = final_params(tmp_path / "ft")
  assert int(tuned.step) == 1 and data["step"] == 1  # own step and data
  for a, b in zip(
    jax.tree.leaves(base.params), jax.tree.leaves(tuned.params), strict=True
  ):
    np.testing.assert_allclose(a, b, atol=1e-6)
  saved = json.loads((tmp_path / "ft" / "config.json").read_text())
  assert saved["init_from"] == str(workdir)
  assert saved["data"]["vocab_from"] == str(workdir)
  assert workdir_lib.read_vocabs(
    str(tmp_path / "ft")
  ) == workdir_lib.read_vocabs(str(workdir))


def test_a_model_file_can_be_fine_tuned(workdir, tmp_path):
  path = tmp_path / "base.mjx"
  assert export.main([f"--workdir={workdir}", f"--out={path}"]) == 0
  config = finetune_config(tmp_path, path, **{"train.num_train_steps": 2})
  metrics = loop.train_and_evaluate(config, str(tmp_path / "ft"))
  assert np.isfinite(metrics["eval/loss"])


def test_another_model_config_is_one_error_naming_the_field(workdir, tmp_path):
  config = finetune_config(tmp_path, workdir, **{"model.dense_size": 32})
  with pytest.raises(
    errors.ConfigError, match="config.model.dense_size was 16"
  ):
    loop.train_and_evaluate(config, str(tmp_path / "ft"))
  assert not (tmp_path / "ft" / "config.json").exists()


def test_too_many_unseen_tokens_are_refused(workdir, tmp_path):
  midi = tmp_path / "triplets"
  midi.mkdir()
  for i in range(20):  # triplet eighths: a duration the base never saw
    scale = (60, 62, 64, 65, 67, 69, 71, 72)  # pitches the base has seen
    events = [Event((scale[(i + j) % 8],), F(1, 3)) for j in range(24)]
    midi_io.write_midi(Song(events, key_signature="C"), midi / f"t{i}.mid")
  config = tiny_config(midi, tmp_path / "data")
  # The 20 tunes are transpositions of 8: split by groups, they would
  # leave a split empty; here they are 20 songs.
  config.data.group_splits = False
  config.init_from = str(workdir)
  with pytest.raises(errors.CorpusError, match=r"duration events .* never saw"):
    loop.train_and_evaluate(config, str(tmp_path / "ft"))
  config.data.max_unk_share = 1.0  # accepted as unk when asked
  config.train.num_train_steps = 1
  loop.train_and_evaluate(config, str(tmp_path / "ft"))
  report = json.loads((tmp_path / "data" / "report.json").read_text())
  assert report["unknown_tokens"]["duration"]["share"] == 1.0
  assert list(report["unknown_tokens"]["duration"]["most_common"]) == ["1/3"]
