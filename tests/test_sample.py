"""The sampler, primers, generation outputs and their errors."""

import json
import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from melodyjax.listening import outputs
from melodyjax.music import midi_io, tokens
from melodyjax.music.events import Event
from melodyjax.sampling import draw, generate, sampler
from melodyjax.sampling import request as request_lib
from melodyjax.training import runs
from tests.helpers import counting_step_traces, run_python


@pytest.fixture(scope="module")
def run(workdir):
  return runs.from_workdir(str(workdir))


def primer_arrays(run, text, batch=3, capacity=8):
  events = generate.parse_primer_text(text)
  pitch, duration = generate.encode_primer(events, run, "test")
  primer_pitch = np.zeros((batch, capacity), np.int32)
  primer_duration = np.zeros((batch, capacity), np.int32)
  primer_pitch[:, : len(pitch)] = pitch
  primer_duration[:, : len(duration)] = duration
  lengths = np.full(batch, len(pitch), np.int32)
  return (
    jnp.asarray(primer_pitch),
    jnp.asarray(primer_duration),
    jnp.asarray(lengths),
  )


def test_filter_logits_top_k_and_top_p():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  keep = lambda out: (np.asarray(out[0]) > -1e29).tolist()  # noqa: E731
  assert keep(draw.filter_logits(logits, 1.0, 0, 1.0)) == [True] * 4
  assert keep(draw.filter_logits(logits, 1.0, 2, 1.0)) == [
    True,
    True,
    False,
    False,
  ]
  # Nucleus 0.7: 0.5 alone is not enough, 0.5 + 0.3 is.
  assert keep(draw.filter_logits(logits, 1.0, 0, 0.7)) == [
    True,
    True,
    False,
    False,
  ]
  assert keep(draw.filter_logits(logits, 1.0, 0, 0.4)) == [
    True,
    False,
    False,
    False,
  ]
  # Temperature sharpens without changing the order.
  cold = jax.nn.softmax(draw.filter_logits(logits, 0.1, 0, 1.0))
  assert float(cold[0, 0]) > 0.99


def test_same_seed_same_notes_and_primer_kept(run):
  primer = primer_arrays(run, "C4:1 D4:0.5 E4:0.5")
  settings = draw.make_settings(1.0)
  args = (run.model, run.params, *primer)
  a = sampler.sample(*args, jax.random.key(7), settings, num_notes=20)
  b = sampler.sample(*args, jax.random.key(7), settings, num_notes=20)
  c = sampler.sample(*args, jax.random.key(8), settings, num_notes=20)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])
  pitch = np.asarray(a[0])
  assert (pitch[:, 0] == tokens.BOS_ID).all()
  assert run.pitch_vocab.decode(pitch[0, 1:4]) == ["C4", "D4", "E4"]
  assert run.duration_vocab.decode(np.asarray(a[1])[0, 1:4]) == [
    "1.0",
    "0.5",
    "0.5",
  ]
  # Reserved tokens other than eos are never sampled.
  generated = pitch[:, 4:]
  assert not np.isin(generated, [tokens.BOS_ID, tokens.UNK_ID]).any()


@pytest.mark.parametrize(
  "slow_path", ["sampler.MAX_INPUT_TABLE_BYTES", "draw.MAX_NOISE_BYTES"]
)
def test_fast_paths_sample_the_same_notes(run, monkeypatch, slow_path):
  """Input table and noise drawn before the scan, against per-note work."""
  primer = primer_arrays(run, "C4:1 D4:0.5")
  settings = draw.make_settings(1.0)
  args = (run.model, run.params, *primer, jax.random.key(3), settings)
  length = 1 + primer[0].shape[1] + 24
  assert sampler.use_input_table(run.model.config, 3 * length)
  fast = sampler.sample(*args, num_notes=24)
  fast_window = sampler.sample_window(*args, num_notes=24, seq_len=8)
  fast_program = sampler.sample.lower(*args, num_notes=24).as_text()
  module, name = slow_path.split(".")
  monkeypatch.setattr({"sampler": sampler, "draw": draw}[module], name, 0)
  jax.clear_caches()  # trace again, without the fast path
  slow = sampler.sample(*args, num_notes=24)
  slow_window = sampler.sample_window(*args, num_notes=24, seq_len=8)
  # The slow path really ran: the compiled program is another one.
  assert sampler.sample.lower(*args, num_notes=24).as_text() != (fast_program)
  jax.clear_caches()
  for a, b in [(fast, slow), (fast_window, slow_window)]:
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_short_term_model_continues_the_melodys_own_phrase(run):
  phrase = "C4:1 D4:0.5 E4:0.5 D4:1 "
  text = phrase * 3 + "C4:1 D4:0.5 E4:0.5"
  primer = primer_arrays(run, text, batch=256, capacity=16)
  args = (run.model, run.params, *primer, jax.random.key(5))
  length = len(generate.parse_primer_text(text))

  def continuation(weight, **kwargs):
    settings = draw.make_settings(1.0, short_term=weight)
    pitch, duration = sampler.sample(*args, settings, num_notes=1, **kwargs)
    return (
      run.pitch_vocab.decode(np.asarray(pitch)[:, length + 1]),
      run.duration_vocab.decode(np.asarray(duration)[:, length + 1]),
    )

  plain = continuation(None)
  copied = continuation((0.9, 0.9), short_term_order=(4, 4))
  share = lambda c: np.mean([p == "D4" for p in c[0]])  # noqa: E731
  assert share(copied) > 0.8 > share(plain) + 0.3, (share(copied), share(plain))
  assert np.mean([d == "1.0" for d in copied[1]]) > 0.8
  # weight 0: the network's own notes
  assert continuation((0.0, 0.0), short_term_order=(4, 4)) == plain


def test_changing_settings_and_primer_does_not_retrace(run):
  model = run.model
  with counting_step_traces() as traces:
    for text, temperature, top_k, top_p, seed in [
      ("C4:1", 1.0, 0, 1.0, 0),
      ("C4:1 D4:0.5 E4:0.5", 0.5, 3, 0.9, 1),
      ("", (0.8, 1.2), (5, 2), (1.0, 0.5), 2),
    ]:
      primer = primer_arrays(run, text)
      sampler.sample(
        model,
        run.params,
        *primer,
        jax.random.key(seed),
        draw.make_settings(temperature, top_k, top_p),
        num_notes=16,
      )
  assert traces["count"] == 1


def test_window_mode_is_jitted_deterministic_and_keeps_the_primer(run):
  primer = primer_arrays(run, "E4:0.5 D4:0.5")
  settings = draw.make_settings(1.0)
  args = (run.model, run.params, *primer, jax.random.key(1), settings)
  a = sampler.sample_window(*args, num_notes=12, seq_len=16)
  b = sampler.sample_window(*args, num_notes=12, seq_len=16)
  np.testing.assert_array_equal(a[0], b[0])
  assert run.pitch_vocab.decode(np.asarray(a[0])[0, 1:3]) == ["E4", "D4"]


def test_melodies_stop_at_eos_or_num_notes(run):
  melodies = generate.generate(
    run, request_lib.Request(num_outputs=16, num_notes=30, seed=3)
  )
  assert all(1 <= len(m) <= 30 for m in melodies)
  events = [e for m in melodies for e in m]
  assert all(e.quarters > 0 for e in events)


def test_written_files_read_back_as_generated(run, tmp_path):
  request = request_lib.Request(num_outputs=4, num_notes=40, seed=5)
  melodies = generate.generate(
    run, request, generate.parse_primer_text("C4:1 R:0.5 G4:0.5")
  )
  paths = outputs.write_outputs(
    melodies,
    str(tmp_path),
    step=run.step,
    workdir=run.workdir,
    request=request,
    rendering=outputs.Rendering(tempo_bpm=90, program=41, velocity=70),
  )
  for path, events in zip(paths, melodies, strict=True):
    assert midi_io.read_midi(path).events == events
    sidecar = json.loads(open(path[:-4] + ".json").read())
    assert tokens.tokens_to_events(sidecar["pitch"], sidecar["duration"]) == (
      events
    )
    assert sidecar["seed"] == 5 and sidecar["program"] == 41
    assert os.path.getsize(path[:-4] + ".png") > 1000


def test_canonical_events_match_what_a_file_keeps():
  q = lambda *pairs: [Event(p, x) for p, x in pairs]  # noqa: E731
  from fractions import Fraction as F

  events = q(
    ((), F(1)),
    ((60,), F(1)),
    ((), F(1, 2)),
    ((), F(1, 2)),
    ((62,), F(1)),
    ((), F(2)),
  )
  assert midi_io.canonical_events(events) == q(
    ((60,), F(1)), ((), F(1)), ((62,), F(1))
  )


def run_main(*args):
  return run_python("sample_main.py", *args)


def test_main_writes_files(workdir, tmp_path):
  result = run_main(
    f"--workdir={workdir}",
    f"--output_dir={tmp_path}",
    "--num_outputs=2",
    "--num_notes=10",
    "--primer=C4:1",
    "--temperature=0.8,1.1",
    "--top_p=0.95",
  )
  assert result.returncode == 0, result.stderr
  assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".mid") == [
    "sample_10_0.mid",
    "sample_10_1.mid",
  ]


@pytest.mark.parametrize(
  "args, message",
  [
    (["--primer=C4:1 X9:1"], "not a note name"),
    (["--primer=C4:1 C#0:1"], "nearest valid"),
    (["--primer=C4:0.7"], "duration '7/10' is not in this model's vocab"),
    (["--step=999"], "no checkpoint at step 999"),
  ],
)
def test_main_user_errors_are_one_line(workdir, args, message):
  result = run_main(f"--workdir={workdir}", "--num_notes=4", *args)
  assert result.returncode == 2
  assert message in result.stderr
  assert "Traceback" not in result.stderr


def test_workdir_problems_are_one_line(workdir, tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  result = run_main(f"--workdir={empty}")
  assert result.returncode == 2 and "config.json not found" in result.stderr
  # A workdir whose vocabulary does not match its checkpoint.
  broken = tmp_path / "broken"
  subprocess.run(["cp", "-r", str(workdir), str(broken)], check=True)
  vocab = json.loads((broken / "vocab_pitch.json").read_text())
  vocab["tokens"] = vocab["tokens"][:-3]
  (broken / "vocab_pitch.json").write_text(json.dumps(vocab))
  result = run_main(f"--workdir={broken}")
  assert result.returncode == 2
  assert "does not match" in result.stderr
  assert "Traceback" not in result.stderr
  # A primer MIDI without notes.
  silent = tmp_path / "silent.mid"
  midi_io.write_midi([Event((), 1)], silent)
  result = run_main(f"--workdir={workdir}", f"--primer_midi={silent}")
  assert result.returncode == 2 and "no notes" in result.stderr
