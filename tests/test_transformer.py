"""The melody Transformer (`model.arch='transformer'`): the cached step is
the full pass, attention is causal, and it trains (jit and pmap on four
devices), resumes exactly, samples with every control without recompiling,
exports and refuses what it cannot do."""

import base64
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from melodyjax import errors
from melodyjax.cli import export
from melodyjax.data import dataset as dataset_lib
from melodyjax.data import report
from melodyjax.data import windows as windows_lib
from melodyjax.model import arch, transformer
from melodyjax.model import config as model_config_lib
from melodyjax.model import model as model_lib
from melodyjax.music import midi_io
from melodyjax.sampling import draw, generate, plan, sampler
from melodyjax.sampling import request as request_lib
from melodyjax.training import config as training_config
from melodyjax.training import loop, runs
from tests.helpers import (
  assert_trees_equal,
  call,
  counting_step_traces,
  final_params,
  resume_after_step_10,
  serving,
  tiny_config,
  write_tunes,
)

SIZES = dict(
  transformer_width=32,
  transformer_layers=2,
  transformer_heads=4,
  transformer_ff=64,
)


def small(**fields) -> model_config_lib.ModelConfig:
  return model_config_lib.ModelConfig(
    pitch_vocab_size=20,
    duration_vocab_size=10,
    pitch_embed_dim=16,
    duration_embed_dim=8,
    dense_size=16,
    arch="transformer",
    **{**SIZES, **fields},
  )


def events(batch=3, time=14, seed=0):
  rng = np.random.default_rng(seed)
  return (
    jnp.asarray(rng.integers(4, 20, (batch, time))),
    jnp.asarray(rng.integers(4, 10, (batch, time))),
  )


@pytest.mark.parametrize("position", model_config_lib.POSITIONS)
@pytest.mark.parametrize("duration_given_pitch", [False, True])
def test_the_cached_step_is_the_full_pass(position, duration_given_pitch):
  config = small(
    transformer_position=position,
    duration_given_pitch=duration_given_pitch,
    condition_metre=True,
    time_signature_vocab_size=3,
  )
  model = arch.create_model(config)
  pitch, duration = events()
  bar = jnp.asarray(np.arange(14) % 12)[None].repeat(3, 0)
  signature = jnp.ones_like(pitch)
  conditions = {"bar_position": bar, "time_signature": signature}
  params = {"params": model_lib.init_params(model, jax.random.key(1))}
  full_pitch, full_duration, _ = model.apply(
    params, pitch, duration, conditions=conditions
  )
  carry = model.apply(params, 3, 14, method="initial_carry")
  for t in range(14):
    step_conditions = {name: ids[:, t] for name, ids in conditions.items()}
    step_pitch, step_duration, carry = model.apply(
      params,
      pitch[:, t],
      duration[:, t],
      carry,
      None,
      step_conditions,
      method="step",
    )
    np.testing.assert_allclose(step_pitch, full_pitch[:, t], atol=1e-5)
    np.testing.assert_allclose(step_duration, full_duration[:, t], atol=1e-5)


@pytest.mark.parametrize("position", model_config_lib.POSITIONS)
def test_a_later_event_never_changes_an_earlier_logit(position):
  model = arch.create_model(small(transformer_position=position))
  pitch, duration = events()
  params = {"params": model_lib.init_params(model, jax.random.key(2))}
  before, _, _ = model.apply(params, pitch, duration)
  changed, _, _ = model.apply(
    params, pitch.at[:, 9].set(4), duration.at[:, 9].set(4)
  )
  np.testing.assert_array_equal(changed[:, :9], before[:, :9])
  assert not np.allclose(changed[:, 9:], before[:, 9:])


def test_dropout_masks_do_not_depend_on_the_split():
  rows = jnp.arange(8)
  key = jax.random.key(3)
  whole = transformer.row_dropout_mask(key, rows, (5, 4), 0.5)
  halves = [
    transformer.row_dropout_mask(key, rows[i : i + 4], (5, 4), 0.5)
    for i in (0, 4)
  ]
  np.testing.assert_array_equal(jnp.concatenate(halves), whole)


def _config(tmp_path, **train):
  tmp_path.mkdir(parents=True, exist_ok=True)
  midi = write_tunes(tmp_path / "midi", 40, 9)
  config = tiny_config(midi, tmp_path / "data", **train)
  for name, value in SIZES.items():
    config.model[name] = value
  config.model.arch = "transformer"
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A run of 20 steps with an average of its parameters (EMA)."""
  root = tmp_path_factory.mktemp("transformer")
  config = _config(root, ema_decay=0.5)
  loop.train_and_evaluate(config, str(root / "run"))
  return root / "run"


def test_jit_and_pmap_on_four_devices_train_alike_and_resume_exactly(
  tmp_path,
):
  assert jax.device_count() == 4  # conftest: the batch of 8 is split in 4
  finals = {}
  for parallel in ("jit", "pmap"):
    config = _config(tmp_path / parallel, parallel=parallel)
    (full, _), (cut, _) = resume_after_step_10(config, tmp_path / parallel)
    assert_trees_equal(full.params, cut.params)
    assert_trees_equal(full.opt_state, cut.opt_state)
    finals[parallel] = jax.device_get(full.params)
  for a, b in zip(*map(jax.tree.leaves, finals.values()), strict=True):
    np.testing.assert_allclose(a, b, atol=2e-5)


def test_sampling_keeps_its_promises_and_compiles_once(trained):
  run = runs.from_workdir(str(trained))
  assert isinstance(run.model, transformer.MelodyTransformer)
  request = request_lib.Request(
    num_outputs=4, num_notes=40, bars=2, end_on_tonic=True, seed=5
  )
  melodies = generate.generate(run, request)
  resolved = plan.make_plan(run, request)
  for melody in melodies:
    met = plan.outcome(resolved, request, melody, run.config.data.grid)
    assert met["bars_met"] and met["ends_on_tonic"], met
  primer = (
    jnp.zeros((2, 4), jnp.int32),
    jnp.zeros((2, 4), jnp.int32),
    jnp.zeros(2, jnp.int32),
  )
  with counting_step_traces(transformer.MelodyTransformer) as traces:
    for seed, temperature in ((0, 1.0), (1, 0.7), (2, (0.9, 1.2))):
      sampler.sample(
        run.model,
        run.params,
        *primer,
        jax.random.key(seed),
        draw.make_settings(temperature),
        num_notes=16,
      )
  assert traces["count"] == 1


def test_beam_search_and_best_of_run(trained):
  run = runs.from_workdir(str(trained))
  base = request_lib.Request(num_outputs=2, num_notes=12, seed=1)
  for fields in ({"beam_size": 2, "branch_factor": 2}, {"best_of": 3}):
    melodies = generate.generate(run, dataclasses.replace(base, **fields))
    assert len(melodies) == 2 and all(melodies)


def test_the_model_file_samples_what_the_workdir_samples(trained, tmp_path):
  path = tmp_path / "tf.mjx"
  assert export.main([f"--workdir={trained}", f"--out={path}"]) == 0
  request = request_lib.Request(num_outputs=3, num_notes=16, seed=9)
  from_file = generate.generate(runs.from_model_file(str(path)), request)
  assert from_file == generate.generate(
    runs.from_workdir(str(trained)), request
  )


def test_what_it_cannot_do_is_refused_in_one_line(tmp_path):
  config = _config(tmp_path, carry_state=True)
  with pytest.raises(errors.ConfigError, match="carries an LSTM's state"):
    training_config.check(config)
  config = _config(tmp_path)
  config.model.transformer_heads = 3
  with pytest.raises(errors.ConfigError, match="transformer_heads=3 must"):
    training_config.check(config)
  config.model.transformer_heads = 4
  config.model.arch = "rnn"
  with pytest.raises(errors.ConfigError, match="config.model.arch must be"):
    training_config.check(config)


def test_the_average_is_what_it_exports_and_fine_tunes_from(trained, tmp_path):
  state, _ = final_params(trained)
  path = tmp_path / "tf.mjx"
  assert export.main([f"--workdir={trained}", f"--out={path}"]) == 0
  exported = runs.from_model_file(str(path)).params
  assert_trees_equal(exported, jax.device_get(state.ema))
  averaged = jax.tree.leaves(state.ema)
  raw = jax.tree.leaves(state.params)
  assert not all(map(np.array_equal, averaged, raw))
  for base in (trained, path):
    config = _config(tmp_path / "new", num_train_steps=1, learning_rate=1e-9)
    config.init_from = str(base)
    loop.train_and_evaluate(config, str(tmp_path / f"ft_{base.name}"))
    tuned, data = final_params(tmp_path / f"ft_{base.name}")
    assert int(tuned.step) == 1 and data["step"] == 1
    leaves = map(jax.tree.leaves, (tuned.params, exported))
    for a, b in zip(*leaves, strict=True):
      np.testing.assert_allclose(a, b, atol=1e-6)


def test_the_server_serves_its_model_file(trained, tmp_path):
  path = tmp_path / "served.mjx"
  assert export.main([f"--workdir={trained}", f"--out={path}"]) == 0
  fields = {"num_notes": 12, "num_outputs": 3, "top_k": 5, "seed": 7}
  body = {**fields, "primer": "C4:1 D4:0.5", "temperature": [0.9, 1.0]}
  request = request_lib.Request(**fields, temperature=(0.9, 1.0))
  expected = generate.generate(
    runs.from_workdir(str(trained)),
    request,
    generate.parse_primer_text(body["primer"]),
  )
  with serving(
    f"--model={path}", "--warm_notes=16", "--max_batch=4", "--batch_wait_ms=20"
  ) as (port, _):
    status, health = call(port, "GET", "/health")
    assert status == 200 and [1, 1, 16] in health["compiled_shapes"]
    status, answer = call(port, "POST", "/generate", body)
  assert status == 200, answer
  served = [
    midi_io.read_midi(base64.b64decode(melody["midi_base64"])).events
    for melody in answer["melodies"]
  ]
  assert served == expected


def test_songs_longer_than_a_window_are_cut_and_the_report_says_so():
  lengths = np.array([5, 9, 20, 10])
  split = dataset_lib.Split(
    pitch=np.full(lengths.sum(), 5, np.int32),
    duration=np.full(lengths.sum(), 5, np.int32),
    offsets=np.concatenate([[0], np.cumsum(lengths)]),
    sources=np.array([f"s{i}.mid" for i in range(4)]),
    transpositions=np.zeros(4, np.int32),
  )
  assert report.describe_windows(split, 10) == (
    "2 of 4 songs whole in one window of 10 events; 2 longer ones (up to "
    "20 events) cut into 5 windows"
  )
  windows = windows_lib.make_windows(split, 10)
  assert list(np.bincount(windows.songs)) == [1, 1, 3, 2]
  assert report.describe_windows(split, 21) == (
    "4 of 4 songs whole in one window of 21 events"
  )
