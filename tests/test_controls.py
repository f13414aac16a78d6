"""Conditioning and controls: metre, labels, the conditioned model, the
sampler's constraints and search, and the checks of each control."""

import dataclasses
import fractions
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from melodyjax import errors
from melodyjax.data import dataset as dataset_lib
from melodyjax.data import labels, windows
from melodyjax.evaluation import controls
from melodyjax.listening import outputs
from melodyjax.model import config as model_config_lib
from melodyjax.music import abc_reader, metre, midi_io, tokens, tonality
from melodyjax.music.events import Event, Song
from melodyjax.sampling import (
  constraints,
  draw,
  generate,
  plan,
  sampler,
  search,
)
from melodyjax.sampling import request as request_lib
from melodyjax.training import runs
from melodyjax.training import workdir as workdir_lib
from tests.helpers import counting_step_traces, run_python, train_conditioned

F = fractions.Fraction


@pytest.fixture(scope="module")
def conditioned(tmp_path_factory):
  """A tiny run conditioned on metre, mode and style: 4/4 major tunes in
  folder `march/`, 3/4 minor ones in `waltz/`."""
  root = tmp_path_factory.mktemp("controls")
  train_conditioned(root, 30)
  return root


@pytest.fixture(scope="module")
def run(conditioned):
  return runs.from_workdir(str(conditioned / "run"))


# ------------------------------------------------------------ metre


def test_bar_positions_follow_signatures_and_the_inferred_pickup():
  events = [Event((60,), F(1))] + [Event((62,), F(3))] * 3
  song = Song(events, time_signature=(3, 4))
  found = metre.song_metre(song, 12)
  # Long notes fall on bar lines once the one-beat pickup is found.
  assert found.pickup_steps == 12
  assert found.positions == [24, 0, 0, 0] and found.end_position == 0
  # A given pickup wins; silence before the first note keeps the file's bars.
  assert metre.song_metre(song, 12, F(0)).positions == [0, 12, 12, 12]
  late = song._replace(start_quarters=F(1))
  assert metre.song_metre(late, 12).positions == [12, 24, 24, 24]
  # A time signature change starts a bar where it stands.
  changed = song._replace(meter_changes=((F(4), 2, 4),))
  assert metre.song_metre(changed, 12).signatures[-1] == (2, 4)
  assert metre.song_metre(changed, 12).positions == [24, 0, 0, 12]
  unknown = metre.song_metre(song._replace(time_signature=None), 12)
  assert unknown.positions == [metre.UNKNOWN] * 4


def test_midi_files_keep_signature_changes_and_the_start(tmp_path):
  import mido

  midi = midi_io.song_to_midi(Song([Event((60,), F(1))] * 8))
  midi.tracks[0].insert(
    -1,
    mido.MetaMessage(
      "time_signature", numerator=3, denominator=4, time=4 * 480
    ),
  )
  midi.tracks[1][2].time = 480  # the first note starts a quarter late
  song = midi_io.read_midi(midi_io.io.BytesIO(_bytes(midi)))
  assert song.time_signature == (4, 4)
  assert song.meter_changes == ((F(4), 3, 4),)
  assert song.start_quarters == F(1)
  no_signature = mido.MidiFile(ticks_per_beat=480)
  no_signature.tracks.append(midi.tracks[1])
  assert midi_io.read_midi(_bytes(no_signature)).time_signature is None


def _bytes(midi):
  import io

  buffer = io.BytesIO()
  midi.save(file=buffer)
  return buffer.getvalue()


def test_esac_pickups_come_from_the_abc_text():
  from melodyjax.data.corpora import esac

  head = "X:1\nT: t\nM: 3/4\nL: 1/8\nK: G\n"
  assert esac.abc_pickup(head + "G2 | c4 d2 | e6 |\n") == F(1)
  assert esac.abc_pickup(head + " |  | G | c4 d2 |\n") == F(1, 2)
  assert esac.abc_pickup(head + "c4 d2 | e6 |\n") == 0
  assert esac.abc_pickup(head + "c/2d/2 c4 |\n") == F(5, 2)
  assert esac.abc_pickup(head.replace("3/4", "none") + "c4 |") is None


# ---------------------------------------------------- dataset and model


def test_dataset_holds_conditions_and_labels(conditioned, run):
  data = dataset_lib.load_dataset(conditioned / "data")
  assert dataset_lib.FORMAT_VERSION == 2
  assert data.labels.style.known == ("march", "waltz")
  assert data.labels.mode.known == ("major", "minor")
  assert data.labels.time_signature.known == ("3/4", "4/4")
  assert run.labels == data.labels  # the workdir's copy
  split = data.train
  waltzes = [i for i, s in enumerate(split.sources) if s.startswith("waltz")]
  i = waltzes[0]
  start = split.offsets[i]
  # The pickup is found: the waltz's first long note is on a downbeat.
  assert split.bar_position[start : start + 3].tolist() == [24, 0, 24]
  assert split.style[i] == data.labels.style.id("waltz")
  assert split.mode[i] == data.labels.mode.id("minor")
  # Framed beside the tokens, as `song_conditions` gives them.
  win = windows.make_windows(split, 16, "all")
  _, _, bos = windows.frame_split(split, 16)
  for name, values in windows.song_conditions(split, i).items():
    framed = win.conditions[name][bos[i] : bos[i] + len(values)]
    np.testing.assert_array_equal(framed, values)
  batch = win.gather(np.arange(4))
  assert set(batch.conditions) == set(windows.CONDITIONS)


def test_conditioned_step_equals_sequence_and_sampler_feeds_training_inputs(
  conditioned, run
):
  """The sampler's bar positions and labels are those training reads: the
  likelihood it gives a teacher-forced waltz's next event equals the
  full-sequence model's on the dataset's framed conditions."""
  data = dataset_lib.load_dataset(conditioned / "data")
  split = data.train
  row = next(i for i, s in enumerate(split.sources) if s.startswith("waltz"))
  pitch, duration = split.song(row)
  n = 8
  events = tokens.tokens_to_events(
    run.pitch_vocab.decode(pitch[:n]), run.duration_vocab.decode(duration[:n])
  )
  # The sampler starts on a downbeat: drop the pickup.
  primer = events[1:]
  request = request_lib.Request(
    num_outputs=1,
    num_notes=1,
    time_signature="3/4",
    mode="minor",
    style="waltz",
  )
  ids = generate.encode_primer(primer, run, "test")
  resolved = plan.make_plan(run, request)
  out = sampler.sample(
    run.model,
    run.params,
    jnp.asarray([ids[0]]),
    jnp.asarray([ids[1]]),
    jnp.asarray([len(primer)]),
    jax.random.key(0),
    draw.make_settings(1.0),
    plan.make_controls(resolved, run, request),
    num_notes=1,
    with_scores=True,
  )
  # Inputs bos, events 2..n: the conditions of the onsets of events 2..n+1.
  full = {
    k: jnp.asarray(v[1 : n + 1][None])
    for k, v in windows.song_conditions(split, row).items()
  }
  seq_pitch = jnp.asarray([[tokens.BOS_ID, *ids[0]]])
  seq_duration = jnp.asarray([[tokens.BOS_ID, *ids[1]]])
  logits = run.model.apply(
    {"params": run.params}, seq_pitch, seq_duration, conditions=full
  )
  next_pitch = int(out[0][0, len(primer) + 1])
  next_duration = int(out[1][0, len(primer) + 1])
  # The sampler never draws pad, bos or unk (nor eos as a duration).
  reserved = [tokens.PAD_ID, tokens.BOS_ID, tokens.UNK_ID]
  pitch_logits = logits[0][0, -1].at[jnp.array(reserved)].set(-1e30)
  duration_logits = logits[1][0, -1].at[jnp.array([*reserved, 2])].set(-1e30)
  want = jax.nn.log_softmax(pitch_logits)[next_pitch]
  if next_pitch != tokens.EOS_ID:
    want += jax.nn.log_softmax(duration_logits)[next_duration]
  np.testing.assert_allclose(float(out[2][0]), float(want), rtol=1e-4)


# ---------------------------------------------------------- controls


def test_bars_and_end_on_tonic(run):
  for signature, bars in (("3/4", 4), ("4/4", 2)):
    for mode, tonic in (("major", 0), ("minor", 9)):
      request = request_lib.Request(
        num_outputs=8,
        num_notes=60,
        seed=2,
        time_signature=signature,
        mode=mode,
        bars=bars,
        end_on_tonic=True,
      )
      melodies = generate.generate(run, request)
      bar = metre.bar_quarters(metre.parse_signature(signature))
      assert all(sum(e.quarters for e in m) == bars * bar for m in melodies)
      assert all(
        m[-1].pitches and m[-1].pitches[0] % 12 == tonic for m in melodies
      )
      checks = controls.control_checks(
        melodies,
        signature=metre.parse_signature(signature),
        grid=12,
        tonic=tonic,
        mode=mode,
      )
      assert checks["bars_min"] == checks["bars_max"] == bars
      assert checks["tonic_end_share"] == 1.0


def test_end_on_tonic_without_bars_and_the_key(workdir):
  run = runs.from_workdir(str(workdir))  # unconditioned
  base = request_lib.Request(num_outputs=8, num_notes=20, seed=4)
  ending = generate.generate(run, dataclasses.replace(base, end_on_tonic=True))
  # No mode conditioning: written in C major, so every melody ends on C.
  assert all(m[-1].pitches[0] % 12 == 0 for m in ending)
  plain = generate.generate(run, base)
  moved = generate.generate(run, dataclasses.replace(base, key="D"))
  resolved = plan.make_plan(run, dataclasses.replace(base, key="D"))
  assert plan.key_signature(resolved, normalised=True) == "D"
  for a, b in zip(plain, moved, strict=True):
    got = {
      q.pitches[0] - p.pitches[0]
      for p, q in zip(a, b, strict=True)
      if p.pitches
    }
    assert got in ({2}, {-10})  # C major to D major, an octave down if need


def test_bars_past_what_num_notes_can_hold_are_refused(workdir):
  run = runs.from_workdir(str(workdir))
  request = request_lib.Request(num_outputs=2, num_notes=16, bars=100_000)
  with pytest.raises(errors.GenerateError, match="more than --num_notes=16"):
    plan.make_plan(run, request)


PROMISES = {
  "bars": {"bars": 4, "time_signature": "3/4"},
  "end_on_tonic": {"end_on_tonic": True},
  "key_and_tonic": {"key": "D", "end_on_tonic": True, "bars": 2},
  "num_notes": {"num_notes": 9},
  "time_signature": {"time_signature": "6/8"},
  "everything": {
    "key": "A",
    "time_signature": "6/8",
    "bars": 3,
    "end_on_tonic": True,
    "num_notes": 20,
  },
}
SEEDS = (11, 29, 47)  # 24 melodies each


@pytest.mark.parametrize("name", sorted(PROMISES))
def test_every_melody_keeps_its_promises_in_midi_and_abc(
  workdir, tmp_path, name
):
  """Many seeds for each control: every melody's MIDI and ABC files say
  what was asked, or its sidecar says what was not met."""
  run = runs.from_workdir(str(workdir))
  for seed in SEEDS:
    request = request_lib.Request(
      **{"num_outputs": 24, "num_notes": 24, "seed": seed, **PROMISES[name]}
    )
    _check_promises(run, request, tmp_path / str(seed))


def _check_promises(run, request, tmp_path) -> None:
  """Writes the request's melodies; checks each file keeps its promises."""
  resolved = plan.make_plan(run, request)
  melodies = generate.generate(run, request)
  key = plan.key_signature(resolved, run.config.data.normalize_key)
  paths = outputs.write_outputs(
    melodies,
    str(tmp_path),
    step=run.step,
    workdir=None,
    request=request,
    rendering=outputs.Rendering(  # the files that make a promise
      time_signature=resolved.time_signature,
      key_signature=key,
      piano_roll=False,
      wav=False,
    ),
    outcomes=[plan.outcome(resolved, request, m, 12) for m in melodies],
  )
  tonic = tonality.parse_tonic(request.key or "C")
  bar = metre.bar_quarters(resolved.time_signature)
  for path in paths:
    song = midi_io.read_midi(path)
    with open(path[: -len(".mid")] + ".abc") as f:
      text = f.read()
    with open(path[: -len(".mid")] + ".json") as f:
      met = json.load(f)["outcome"]
    assert song.time_signature == resolved.time_signature
    assert f"M:{metre.signature_label(resolved.time_signature)}\n" in text
    assert song.key_signature == key and f"\nK:{key}\n" in text
    assert len(song.events) <= request.num_notes
    assert abc_reader.read_tune(text).events == song.events
    length = sum(e.quarters for e in song.events)
    assert met["bars"] == pytest.approx(float(length / bar))
    if request.bars:
      assert met["bars_met"] == (length == request.bars * bar)
      # The buffer holds enough: every melody has exactly its bars.
      assert met["bars_met"], (path, length)
    if request.end_on_tonic:
      last = [e for e in song.events if e.pitches][-1]
      assert met["ends_on_tonic"] and last.pitches[0] % 12 == tonic, path


def test_best_of_keeps_the_likeliest_of_the_plain_samples(run):
  request = request_lib.Request(num_outputs=2, num_notes=16, seed=7)
  many = request_lib.Request(num_outputs=8, num_notes=16, seed=7)
  best = generate.sample_ids(run, dataclasses.replace(request, best_of=4))
  pitch, _, score = generate.sample_ids(run, many)
  count = np.sum((pitch[:, 1:] != tokens.PAD_ID), axis=1)
  per_event = (score / count).reshape(2, 4)
  chosen = np.argmax(per_event, axis=1) + 4 * np.arange(2)
  np.testing.assert_array_equal(best[0], pitch[chosen])
  np.testing.assert_allclose(best[2], score[chosen], rtol=1e-6)


def test_prune_keeps_the_likeliest_rows_and_one_copy_of_a_finished_one():
  # 1 melody, beam 2 x branch 2: rows 0..3, scores per event.
  done = jnp.array([False, True, False, False])
  count = jnp.array([2, 2, 2, 2])
  ids = jnp.arange(4)
  state = (ids, ids, done, ((ids[:, None],),), ids, count)
  score = jnp.array([-4.0, -1.0, -3.0, -8.0])
  kept, new = search.prune(state, score, jnp.array([True]), 2, 2)
  # Rows 1 and 2 are kept, each twice; row 1 is finished: one copy stays.
  assert kept[0].tolist() == [1, 1, 2, 2]
  assert new.tolist()[0] == -1.0 and new.tolist()[1] == -np.inf
  assert new.tolist()[2:] == [-3.0, -3.0]
  kept, same = search.prune(state, score, jnp.array([False]), 2, 2)
  assert kept[0].tolist() == [0, 1, 2, 3] and same.tolist() == score.tolist()


def test_beam_search_is_deterministic_and_scores_at_least_plain(run):
  request = request_lib.Request(num_outputs=4, num_notes=16, seed=3)
  beam = dataclasses.replace(request, beam_size=2, branch_factor=3)
  a = generate.sample_ids(run, beam)
  b = generate.sample_ids(run, beam)
  np.testing.assert_array_equal(a[0], b[0])
  assert a[0].shape == (4, 1 + 64 + 16)
  per_event = lambda out: out[2] / np.sum(out[0][:, 1:] != 0, axis=1)  # noqa: E731
  plain = generate.sample_ids(run, request)
  assert per_event(a).mean() > per_event(plain).mean()


def test_changing_controls_does_not_retrace(run):
  with counting_step_traces() as traces:
    for changes in (
      {},
      {"time_signature": "3/4", "bars": 4, "end_on_tonic": True},
      {"mode": "minor", "style": "waltz", "key": "D", "bars": 2},
      {"steps_per_iteration": 0, "seed": 5, "temperature": 0.7},
    ):
      generate.sample_ids(
        run, request_lib.Request(num_outputs=3, num_notes=20, **changes)
      )
  assert traces["count"] == 1


@pytest.mark.parametrize(
  "changes, message",
  [
    (
      {"time_signature": "5/4"},
      "not a time_signature this run was trained with (valid: 3/4, 4/4)",
    ),
    (
      {"mode": "minor", "style": "reel"},
      "--style reel: not a style this run was trained with "
      "(valid: march, waltz)",
    ),
    ({"key": "H"}, "--key H: not a tonic (valid: C, B#"),
    ({"sampler": "window"}, "--sampler=window takes no conditioned model"),
  ],
)
def test_values_the_run_was_not_trained_with_are_one_line_errors(
  run, changes, message
):
  with pytest.raises(errors.GenerateError) as e:
    generate.generate(
      run, request_lib.Request(num_outputs=1, num_notes=4, **changes)
    )
  assert message in str(e.value) and "\n" not in str(e.value)


def test_an_unconditioned_run_refuses_mode_and_style(workdir):
  run = runs.from_workdir(str(workdir))
  for flag in ("mode", "style"):
    with pytest.raises(
      errors.GenerateError, match=f"--{flag} .*without {flag} conditioning"
    ):
      generate.generate(
        run, request_lib.Request(num_outputs=1, num_notes=4, **{flag: "minor"})
      )


def test_control_checks_tell_metres_and_modes_apart():
  dotted = [Event((57,), F(3))] * 4
  in_three = controls.control_checks(
    [dotted], signature=(3, 4), grid=12, tonic=9, mode="minor"
  )
  in_four = controls.control_checks(
    [dotted], signature=(4, 4), grid=12, tonic=9, mode="minor"
  )
  assert in_three["downbeat_share"] == 1.0 and in_four["downbeat_share"] < 1
  assert in_three["bars_mean"] == 4.0 and in_four["bars_mean"] == 3.0
  minor = [Event((p,), F(1)) for p in (57, 60, 64, 57, 60, 57)]
  checks = controls.control_checks(
    [minor], signature=(3, 4), grid=12, tonic=9, mode="minor"
  )
  assert checks["third_share"] == 1.0 and checks["mode_share"] == 1.0
  assert checks["key_share"] == 1.0
  assert checks["tonic_end_share"] == 1.0


def test_sample_main_takes_the_controls(conditioned, tmp_path):
  out = tmp_path / "out"
  result = run_python(
    "sample_main.py",
    f"--workdir={conditioned / 'run'}",
    f"--output_dir={out}",
    "--num_outputs=2",
    "--num_notes=40",
    "--time_signature=3/4",
    "--mode=minor",
    "--style=waltz",
    "--key=D",
    "--bars=4",
    "--end_on_tonic",
    "--beam_size=2",
    "--branch_factor=2",
    "--nowav",
    "--nopiano_roll",
  )
  assert result.returncode == 0, result.stderr[-2000:]
  for name in sorted(os.listdir(out)):
    if name.endswith(".json"):
      with open(out / name) as f:
        sidecar = json.load(f)
      assert sidecar["time_signature"] == [3, 4]
      assert (sidecar["mode"], sidecar["style"], sidecar["bars"]) == (
        "minor",
        "waltz",
        4,
      )
      song = midi_io.read_midi(out / name.replace(".json", ".mid"))
      assert song.time_signature == (3, 4) and song.key_signature == "Dm"
      assert sum(e.quarters for e in song.events) == 12
      assert song.events[-1].pitches[0] % 12 == 2


def test_label_files_travel_with_the_run(conditioned, run, tmp_path):
  assert os.path.exists(conditioned / "run" / labels.FILE)
  from melodyjax.training import model_file

  path = str(tmp_path / "m.mjx")
  model_file.write(
    path,
    config=run.config,
    pitch_vocab=run.pitch_vocab,
    duration_vocab=run.duration_vocab,
    params=jax.tree.map(np.asarray, run.params),
    step=run.step,
    label_vocabs=run.labels,
  )
  again = runs.from_model_file(path)
  assert again.labels == run.labels
  request = request_lib.Request(num_outputs=2, num_notes=12, style="waltz")
  assert generate.generate(again, request) == generate.generate(run, request)


def test_old_runs_default_to_no_conditions():
  fields = {
    f.name: f.default for f in dataclasses.fields(model_config_lib.ModelConfig)
  }
  conditions = [name for name in fields if name.startswith("condition_")]
  assert conditions and not any(fields[name] for name in conditions)
  assert not fields["duration_given_pitch"]
  # A config written before these fields existed is the same model.
  config = tiny.get_config()
  old = {
    k: v
    for k, v in config.model.to_dict().items()
    if k.startswith(("pitch", "duration_embed", "lstm", "dense"))
  }
  workdir_lib.check_same_model(old, config, "old run", "")
  assert labels.empty().style.known == ()
  assert constraints.tonic_mask(
    ["<pad>", "C4", "A3", "C4.E4"], {0}
  ).tolist() == [
    False,
    True,
    False,
    False,
  ]
