"""Property-based fuzzing (Hypothesis) of the readers of outside input: a
MIDI file, an ABC tune, a model file, the server's request parser. Whatever
the bytes, a reader gives a result or its own one-line error, never another
exception. The budget is bounded (a few seconds each) so that the default
suite runs them, and derandomized so that a CI run is reproducible;
`MELODYJAX_FUZZ_EXAMPLES=N` runs N random examples of each instead."""

import io
import json
import os
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melodyjax import errors
from melodyjax.music import abc_reader, midi_io
from melodyjax.serving import requests
from melodyjax.training import model_file, runs
from tests.helpers import tune

EXAMPLES = int(os.environ.get("MELODYJAX_FUZZ_EXAMPLES", "0"))
BUDGET = settings(
  max_examples=EXAMPLES or 500,
  derandomize=not EXAMPLES,
  deadline=None,
  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
GOOD_MIDI = [midi_io.song_to_bytes(tune(i, 8 + i)) for i in range(4)]
ABC_SYMBOLS = "ABCDEFGabcdefgz,'^_=/|:[]()<>-~{}\"0123456789 \nXTMLK"
GOOD_ABC = [
  "X:1\nT:Reel\nM:4/4\nL:1/8\nK:D\n|:dA (3FED A2FA|B2 AF ~G3 z:|\n"
  "|[1 d2 fd e2 ce :|[2 d4 d2 z2|]\n",
  "X:2\nT:Jig\nM:6/8\nL:1/8\nK:Ador\n"
  'A>B c2 "Am"e | {g}f>e d<c [CE]3 | z3 Z2 | [K:G] g2 g- g2 e |]\n',
]


def _mutations(seeds: list[bytes]):
  """Bytes near the good ones: bits flipped, cuts, splices, insertions."""
  return st.builds(
    _mutate,
    st.sampled_from(seeds),
    st.lists(
      st.tuples(
        st.sampled_from(["flip", "cut", "insert", "delete"]),
        st.integers(0, 1 << 16),
        st.binary(min_size=1, max_size=8),
      ),
      min_size=1,
      max_size=6,
    ),
  )


def _mutate(data: bytes, edits) -> bytes:
  data = bytearray(data)
  for kind, at, chunk in edits:
    at = at % (len(data) + 1)
    if kind == "flip" and data:
      data[at % len(data)] ^= chunk[0] or 1
    elif kind == "cut":
      data = data[:at]
    elif kind == "insert":
      data[at:at] = chunk
    elif data:
      del data[at : at + len(chunk)]
  return bytes(data)


@BUDGET
@given(st.one_of(_mutations(GOOD_MIDI), st.binary(max_size=512)))
def test_the_midi_reader_gives_a_song_or_its_own_error(data):
  try:
    song = midi_io.read_midi(data)
  except midi_io.MidiError:
    return
  assert all(event.quarters > 0 for event in song.events)


@BUDGET
@given(
  st.one_of(
    st.builds(
      lambda data: data.decode("utf-8", "replace"),
      _mutations([text.encode() for text in GOOD_ABC]),
    ),
    st.text(
      alphabet=st.sampled_from(
        list("ABCDEFGabcdefgz,'^_=/|:[]()<>-~{}\"0123456789 \nXTMLK")
      ),
      max_size=200,
    ),
  )
)
def test_the_abc_reader_gives_a_tune_or_its_own_error(text):
  try:
    read = abc_reader.read_tune(text, repeats="play")
  except abc_reader.AbcError as e:
    assert "\n" not in str(e)
    return
  assert all(event.quarters > 0 for event in read.events)


@pytest.fixture(scope="module")
def exported(workdir, tmp_path_factory):
  from melodyjax.cli import export

  path = tmp_path_factory.mktemp("fuzz") / "tiny.mjx"
  assert export.main([f"--workdir={workdir}", f"--out={path}"]) == 0
  return path.read_bytes()


def _rezip(data: bytes, member_edits) -> bytes:
  """A model file whose members are edited (mutated, dropped, added)."""
  out = io.BytesIO()
  with (
    zipfile.ZipFile(io.BytesIO(data)) as old,
    zipfile.ZipFile(out, "w") as new,
  ):
    names = old.namelist()
    for index, edits in member_edits:
      name = names[index % len(names)]
      content = old.read(name)
      new.writestr(name, _mutate(content, edits))
    for name in names:
      if name not in new.namelist():
        new.writestr(name, old.read(name))
  return out.getvalue()


@settings(
  max_examples=EXAMPLES or 120,
  derandomize=not EXAMPLES,
  deadline=None,
  suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_the_model_file_reader_gives_a_model_or_its_own_error(
  exported, tmp_path, data
):
  edits = st.lists(
    st.tuples(
      st.sampled_from(["flip", "cut", "insert", "delete"]),
      st.integers(0, 1 << 16),
      st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=3,
  )
  whole = data.draw(st.booleans())
  if whole:  # the archive's bytes themselves
    content = _mutate(exported, data.draw(edits))
  else:  # a member's bytes inside a valid archive
    members = data.draw(
      st.lists(st.tuples(st.integers(0, 100), edits), min_size=1, max_size=2)
    )
    content = _rezip(exported, members)
  path = tmp_path / "fuzzed.mjx"
  path.write_bytes(content)
  try:
    runs.from_model_file(str(path))
  except errors.CheckpointError as e:
    assert "\n" not in str(e)
  else:
    # Only an unchanged content can pass its hashes.
    assert model_file.read(str(path)).manifest["content_sha256"]


# ------------------------------------------------ the server's request parser

GOOD_BODIES = [
  b'{"num_notes": 16, "seed": 3}',
  b'{"primer": "C4:1 D4:0.5", "temperature": [0.9, 1.0], "top_p": 0.95}',
  b'{"short_term": 0.3, "short_term_order": [3, 2], "num_outputs": 2}',
  b'{"top_k": 5, "tempo": 90, "num_notes": 64}',
]
JSON_VALUES = st.recursive(
  st.none()
  | st.booleans()
  | st.integers(-(1 << 70), 1 << 70)
  | st.floats(allow_nan=False)
  | st.text(max_size=40),
  lambda inner: (
    st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3)
  ),
  max_leaves=8,
)
FIELDS = st.sampled_from([*requests.DEFAULTS, "nmu_notes", ""])
PRIMER_TEXT = st.text(alphabet="ABCDEFGR#b0123456789:./ -", max_size=60)


@pytest.fixture(scope="module")
def served_run(workdir):
  return runs.from_workdir(str(workdir))


@settings(
  max_examples=EXAMPLES or 400,
  derandomize=not EXAMPLES,
  deadline=None,
  suppress_health_check=[HealthCheck.too_slow],
)
@given(
  st.one_of(
    _mutations(GOOD_BODIES),
    st.binary(max_size=256),
    st.dictionaries(FIELDS, JSON_VALUES, max_size=5).map(
      lambda d: json.dumps(d).encode()
    ),
    st.dictionaries(st.just("primer"), PRIMER_TEXT, min_size=1, max_size=1).map(
      lambda d: json.dumps(d).encode()
    ),
  )
)
def test_the_request_parser_gives_a_request_or_its_own_error(served_run, body):
  limits = requests.Limits()
  try:
    checked = requests.check(requests.parse_body(body), served_run, limits)
  except requests.RequestError as e:
    assert e.status == 400 and str(e) and "\n" not in str(e), str(e)
  else:
    request = checked.request
    assert 1 <= request.num_notes <= limits.max_notes
    assert 1 <= request.num_outputs <= limits.max_outputs
    assert len(checked.primer_pitch) == len(checked.primer_duration)
    assert len(checked.primer_pitch) <= limits.max_primer_notes
