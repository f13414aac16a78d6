"""WAV previews: a General MIDI soundfont where one is installed, the
additive synth otherwise, and every output naming its renderer."""

import json
from fractions import Fraction as F

import numpy as np
import pytest

from melodyjax.listening import audio, outputs
from melodyjax.music.events import Event
from melodyjax.sampling import request as request_lib

MELODY = [Event((69,), F(1)), Event((), F(1, 2)), Event((72, 76), F(3, 2))]


def _soundfont():
  path = audio.find_soundfont()
  if path is None or audio.renderer() == audio.ADDITIVE:
    pytest.skip(
      "no General MIDI soundfont or no tinysoundfont (`make soundfont`, "
      "pip install --no-deps tinysoundfont)"
    )
  return path


def _peak_hz(samples, rate):
  spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
  return np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]


def test_the_soundfont_plays_the_program_at_the_notes_pitch():
  path = _soundfont()
  rate = audio.SAMPLE_RATE
  flute, name = audio.render([Event((69,), F(2))], tempo_bpm=60, program=73)
  assert name == "tinysoundfont:" + path.rsplit("/", 1)[-1]
  assert len(flute) == int((2 + audio.TAIL_SECONDS) * rate) + 1
  assert np.max(np.abs(flute)) == pytest.approx(0.8)
  # An A4 on the flute: its strongest partial is 440 Hz.
  assert _peak_hz(flute[rate // 4 : rate], rate) == pytest.approx(440, rel=0.02)
  piano, _ = audio.render([Event((69,), F(2))], tempo_bpm=60, program=0)
  assert not np.allclose(piano, flute, atol=0.05)  # another instrument
  # The same melody, the same samples, whatever was played before it.
  again, _ = audio.render([Event((69,), F(2))], tempo_bpm=60, program=73)
  assert np.array_equal(again, flute)
  # The same melody, the same samples, whatever was played before it.
  again, _ = audio.render([Event((69,), F(2))], tempo_bpm=60, program=73)
  assert np.array_equal(again, flute)
  # A rest is silence once the note before it has died away.
  gap = audio.render(
    [Event((69,), F(1, 4)), Event((), F(4)), Event((69,), F(1))],
    tempo_bpm=60,
  )[0]
  assert np.max(np.abs(gap[3 * rate : 4 * rate])) < 0.01


def test_without_a_soundfont_the_additive_synth_plays(monkeypatch, tmp_path):
  monkeypatch.setenv(audio.SOUNDFONT_ENV, "")
  assert audio.find_soundfont() is None and audio.renderer() == "additive"
  samples, name = audio.synthesize(MELODY, str(tmp_path / "a.wav"))
  assert name == "additive"
  assert np.array_equal(samples, audio.render_additive(MELODY))
  monkeypatch.setenv(audio.SOUNDFONT_ENV, str(tmp_path / "missing.sf2"))
  assert audio.renderer() == "additive"


def test_the_sidecar_names_the_renderer(monkeypatch, tmp_path):
  for soundfont in ("", None):
    if soundfont is None:
      monkeypatch.delenv(audio.SOUNDFONT_ENV, raising=False)
    else:
      monkeypatch.setenv(audio.SOUNDFONT_ENV, soundfont)
    folder = tmp_path / f"out{soundfont is None}"
    outputs.write_outputs(
      [MELODY],
      str(folder),
      step=1,
      workdir=None,
      request=request_lib.Request(num_outputs=1),
      rendering=outputs.Rendering(piano_roll=False, program=40),
    )
    sidecar = json.loads((folder / "sample_1_0.json").read_text())
    assert sidecar["renderer"] == audio.renderer()
    assert sidecar["program"] == 40
    samples, rate = audio.read_wav(str(folder / "sample_1_0.wav"))
    assert len(samples) / rate == pytest.approx(3 * 0.6 + 0.5, abs=0.01)
