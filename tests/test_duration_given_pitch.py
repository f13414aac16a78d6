"""The duration head given the pitch (`model.duration_given_pitch`): the
teacher-forced loss, the exact scores, and the sampler's constrained joint."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from melodyjax import errors
from melodyjax.cli import export
from melodyjax.evaluation import predict
from melodyjax.model import config as model_config_lib
from melodyjax.model import model as model_lib
from melodyjax.music import tokens
from melodyjax.sampling import draw, generate, sampler
from melodyjax.sampling import request as request_lib
from melodyjax.training import runs, steps
from tests.helpers import tiny_config, train, write_tunes


@pytest.fixture(scope="module")
def given(tmp_path_factory):
  """A tiny run with the duration head given the pitch (30 steps)."""
  root = tmp_path_factory.mktemp("given")
  write_tunes(root / "midi", 40, 9, name="t{}.mid")
  config = tiny_config(root / "midi", root / "data")
  config.model.duration_given_pitch = True
  config.train.num_train_steps = 30
  train(config, root / "run")
  return root / "run"


@pytest.fixture(scope="module")
def run(given):
  return runs.from_workdir(str(given))


def _tiny_model(given_pitch):
  config = model_config_lib.ModelConfig(
    pitch_vocab_size=11,
    duration_vocab_size=8,
    pitch_embed_dim=8,
    duration_embed_dim=4,
    lstm_sizes=(16,),
    dense_size=8,
    lstm_impl="scan",
    duration_given_pitch=given_pitch,
  )
  model = model_lib.MelodyModel(config)
  return model, model_lib.init_params(model, jax.random.key(3))


@pytest.mark.parametrize("given_pitch", [False, True])
def test_the_duration_loss_reads_the_target_pitch(given_pitch):
  model, params = _tiny_model(given_pitch)
  rng = np.random.default_rng(0)
  ids = lambda high: jnp.asarray(rng.integers(4, high, (3, 6)), jnp.int32)  # noqa: E731
  batch = {
    "pitch": ids(11),
    "duration": ids(8),
    "target_pitch": ids(11),
    "target_duration": ids(8),
  }
  sums = steps.compute_sums(model, params, batch, "all")
  moved = dict(batch, target_pitch=(batch["target_pitch"] - 3) % 7 + 4)
  other = steps.compute_sums(model, params, moved, "all")
  changed = abs(float(sums["nll_duration"]) - float(other["nll_duration"]))
  assert (changed > 1e-4) == given_pitch
  assert float(sums["nll_pitch"]) != float(other["nll_pitch"])
  # The 'last' objective feeds the last target pitch.
  last = dict(
    batch,
    target_pitch=batch["target_pitch"][:, -1],
    target_duration=batch["target_duration"][:, -1],
  )
  np.testing.assert_allclose(
    float(steps.compute_sums(model, params, last, "last")["nll_duration"]),
    -np.sum(
      np.asarray(
        jax.nn.log_softmax(
          model.apply(
            {"params": params},
            batch["pitch"],
            batch["duration"],
            target_pitch=batch["target_pitch"],
          )[1][:, -1]
        )
      )[np.arange(3), np.asarray(last["target_duration"])]
    ),
    rtol=1e-5,
  )


def test_independent_heads_have_no_new_parameters():
  _, plain = _tiny_model(False)
  _, given = _tiny_model(True)
  assert set(given) - set(plain) == {"duration_hidden", "duration_pitch_embed"}


def test_the_option_is_checked_in_one_line():
  with pytest.raises(errors.ConfigError, match="duration_given_pitch must be"):
    dataclasses.replace(_tiny_model(False)[0].config, duration_given_pitch=1)


def test_every_pitch_at_once_equals_each_pitch_given(run):
  pitch = jnp.asarray([[tokens.BOS_ID, 5, 6, 7]], jnp.int32)
  duration = jnp.asarray([[tokens.BOS_ID, 5, 5, 6]], jnp.int32)
  variables = {"params": run.params}
  _, every, _ = run.model.apply(variables, pitch, duration)
  target = jnp.asarray([[5, 8, 4, 6]], jnp.int32)
  _, one, _ = run.model.apply(variables, pitch, duration, target_pitch=target)
  picked = jnp.take_along_axis(every, target[..., None, None], 2)[:, :, 0]
  np.testing.assert_allclose(picked, one, atol=1e-5)


def test_test_bits_equal_the_training_loss_on_the_same_songs(run):
  dataset = predict.load_dataset_of(run)
  scores = predict.score_split(run, "test", dataset)
  nll = {"pitch": 0.0, "duration": 0.0}
  count = 0.0
  for _, streams, _ in predict.song_batches(dataset.test, 64):
    batch = {
      "pitch": streams["pitch"][0],
      "duration": streams["duration"][0],
      "target_pitch": streams["pitch"][1],
      "target_duration": streams["duration"][1],
    }
    sums = steps.compute_sums(run.model, run.params, batch, "all")
    nll["pitch"] += float(sums["nll_pitch"])
    nll["duration"] += float(sums["nll_duration"])
    count += float(sums["count"])
  bits = {k: v / count / np.log(2) for k, v in nll.items()}
  assert scores["bits_per_note_pitch"] == pytest.approx(bits["pitch"], 1e-4)
  assert scores["bits_per_note_duration"] == pytest.approx(
    bits["duration"], 1e-4
  )


def _scored(run, pitch, duration, t0_banned):
  """Each sampled event's log-likelihood under the model's scoring path,
  renormalised over the tokens the sampler may draw; [batch, time]."""
  inputs = (jnp.asarray(pitch[:, :-1]), jnp.asarray(duration[:, :-1]))
  lp_pitch, lp_duration = predict._log_probs(
    run.model, run.params, *inputs, {}, jnp.asarray(pitch[:, 1:])
  )
  lp_pitch, lp_duration = np.asarray(lp_pitch), np.asarray(lp_duration)
  reserved = [tokens.PAD_ID, tokens.BOS_ID, tokens.UNK_ID]
  banned_pitch = np.zeros(lp_pitch.shape, bool)
  banned_pitch[..., reserved] = True
  banned_pitch[:, 0, t0_banned] = True
  banned_duration = np.zeros(lp_duration.shape, bool)
  banned_duration[..., [*reserved, tokens.EOS_ID]] = True

  def renormalised(lp, banned, ids):
    norm = np.log(np.sum(np.where(banned, 0.0, np.exp(lp)), -1))
    return np.take_along_axis(lp, ids[..., None], -1)[..., 0] - norm

  target_pitch, target_duration = pitch[:, 1:], duration[:, 1:]
  out = renormalised(lp_pitch, banned_pitch, target_pitch)
  out = out + np.where(
    target_pitch == tokens.EOS_ID,
    0.0,
    renormalised(lp_duration, banned_duration, target_duration),
  )
  return np.where(target_pitch == tokens.PAD_ID, 0.0, out)


@pytest.mark.parametrize("table", [False, True])  # the input-table path
def test_the_samplers_log_probability_is_the_scored_likelihood(
  run, table, monkeypatch
):
  monkeypatch.setattr(sampler, "MAX_INPUT_TABLE_BYTES", (1 << 30) * table)
  sampler.sample.clear_cache()
  request = request_lib.Request(num_outputs=3, num_notes=24, seed=5)
  pitch, duration, score = generate.sample_ids(run, request)
  assert sampler.use_input_table(run.model.config, pitch.size) == table
  rest = generate.rest_id(run)
  banned = [tokens.EOS_ID] + ([rest] if rest >= 0 else [])
  expected = _scored(run, pitch, duration, banned).sum(-1)
  np.testing.assert_allclose(score, expected, rtol=1e-4, atol=1e-4)


def test_the_constrained_joint_is_drawn_exactly():
  rng = np.random.default_rng(1)
  batch, vocab_p, vocab_d = 20_000, 7, 6
  pitch_logits = jnp.asarray(rng.normal(size=(1, vocab_p)), jnp.float32)
  duration_logits = jnp.asarray(
    rng.normal(size=(1, vocab_p, vocab_d)), jnp.float32
  )
  ban = rng.random((1, vocab_p, vocab_d)) < 0.4
  ban[:, tokens.EOS_ID] = True  # eos banned
  rules = (None, None, lambda: jnp.asarray(np.repeat(ban, batch, 0)))
  noise = jax.random.gumbel(jax.random.key(0), (batch, vocab_p + vocab_d))
  settings = draw.make_settings((0.8, 1.3))
  pitch, duration, log_prob = draw.choose_joint(
    jnp.asarray(3),
    noise,
    jnp.repeat(pitch_logits, batch, 0),
    jnp.repeat(duration_logits, batch, 0),
    settings,
    -1,
    rules,
  )
  # The tempered joint, reserved tokens out, restricted to allowed pairs.
  p = np.asarray(pitch_logits[0], np.float64) / 0.8
  d = np.asarray(duration_logits[0], np.float64) / 1.3
  p[[tokens.PAD_ID, tokens.BOS_ID, tokens.UNK_ID]] = -np.inf
  d[:, [tokens.PAD_ID, tokens.BOS_ID, tokens.UNK_ID, tokens.EOS_ID]] = -np.inf
  joint = np.exp(p - np.logaddexp.reduce(p))[:, None] * np.exp(
    d - np.logaddexp.reduce(d, axis=-1, keepdims=True)
  )
  np.testing.assert_allclose(
    np.asarray(log_prob[:1]),
    np.log(joint[int(pitch[0]), int(duration[0])]),
    rtol=1e-5,
  )
  joint = np.where(ban[0], 0.0, joint)
  joint /= joint.sum()
  counts = np.zeros_like(joint)
  np.add.at(counts, (np.asarray(pitch), np.asarray(duration)), 1)
  assert counts[ban[0]].sum() == 0
  np.testing.assert_allclose(counts / batch, joint, atol=0.012)


def test_bars_and_end_on_tonic_hold(run):
  for bars, beam in ((2, 1), (3, 2)):
    request = request_lib.Request(
      num_outputs=8,
      num_notes=40,
      seed=2,
      time_signature="4/4",
      bars=bars,
      end_on_tonic=True,
      beam_size=beam,
      branch_factor=beam,
    )
    melodies = generate.generate(run, request)
    assert all(sum(e.quarters for e in m) == 4 * bars for m in melodies)
    assert all(m[-1].pitches[0] % 12 in (0, 9) for m in melodies)
  request = request_lib.Request(
    num_outputs=8, num_notes=20, seed=4, end_on_tonic=True
  )
  ending = generate.generate(run, request)
  assert all(m[-1].pitches and m[-1].pitches[0] % 12 in (0, 9) for m in ending)


def test_the_model_file_keeps_the_head(given, run, tmp_path):
  path = tmp_path / "given.mjx"
  flags = [f"--workdir={given}", "--step=latest", f"--out={path}"]
  assert export.main(flags) == 0
  loaded = runs.from_model_file(str(path))
  assert loaded.model.config.duration_given_pitch
  request = request_lib.Request(num_outputs=3, num_notes=20, seed=9)
  for a, b in zip(
    generate.sample_ids(run, request),
    generate.sample_ids(loaded, request),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)


def test_the_window_sampler_draws_from_the_joint(run):
  request = request_lib.Request(
    num_outputs=4, num_notes=12, seed=1, sampler="window"
  )
  pitch, duration, _ = generate.sample_ids(run, request)
  drawn = pitch[:, 1:] > tokens.UNK_ID
  assert drawn[:, 0].all()
  # Every drawn note has a real duration; eos has none.
  assert (duration[:, 1:][drawn] > tokens.UNK_ID).all()
  eos = pitch == tokens.EOS_ID
  assert (duration[eos] == tokens.EOS_ID).all()
