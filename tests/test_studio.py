"""The studio: a conditioned run served with every control, its WAVs, and
the page at `/` driven in a real headless Chromium."""

import base64
import concurrent.futures
import io
import os
import re
import time
import urllib.parse
import wave

import pytest

from melodyjax.listening import audio
from melodyjax.music import midi_io
from melodyjax.sampling import generate
from melodyjax.sampling import request as request_lib
from melodyjax.training import runs
from tests.helpers import (
  PROJECT,
  assert_refused,
  browser_problem,
  call,
  chromium,
  serving,
  train_conditioned,
)


@pytest.fixture(scope="module")
def conditioned(tmp_path_factory):
  """A tiny run conditioned on metre, mode and style: 4/4 major `march`
  tunes and 3/4 minor `waltz` ones."""
  return train_conditioned(tmp_path_factory.mktemp("studio"), 20)


@pytest.fixture(scope="module")
def server(conditioned):
  with serving(
    f"--workdir={conditioned}",
    "--warm_notes=32",
    "--max_batch=8",
    "--batch_wait_ms=50",
  ) as server:
    yield server


@pytest.fixture(scope="module")
def run(conditioned):
  return runs.from_workdir(str(conditioned))


def expected(run, body):
  """sample_main.py's melodies for a body's settings."""
  fields = {
    k: tuple(v) if isinstance(v, list) else v
    for k, v in body.items()
    if k not in ("primer", "tempo")
  }
  request = request_lib.Request(**{"num_outputs": 1, **fields})
  primer = generate.parse_primer_text(body.get("primer", ""))
  return generate.generate(run, request, primer)


MIXED = [
  {"num_notes": 24, "seed": 1},
  {"num_notes": 24, "seed": 2, "time_signature": "3/4", "mode": "minor"},
  {"num_notes": 30, "seed": 3, "style": "waltz", "bars": 4},
  {
    "num_notes": 24,
    "seed": 4,
    "end_on_tonic": True,
    "key": "D",
    "mode": "major",
  },
  {"num_notes": 20, "seed": 5, "mode": "minor", "temperature": 0.8},
  {"num_notes": 24, "seed": 6, "primer": "C4:1 D4:1", "style": "march"},
]


def test_mixed_controls_share_calls_and_give_sample_mains_notes(server, run):
  port, _ = server
  before = call(port, "GET", "/health")[1]
  with concurrent.futures.ThreadPoolExecutor(len(MIXED)) as pool:
    answers = list(
      pool.map(lambda b: call(port, "POST", "/generate", b), MIXED)
    )
  after = call(port, "GET", "/health")[1]
  calls = after["sampler_calls"] - before["sampler_calls"]
  assert all(status == 200 for status, _ in answers), answers
  assert calls < len(MIXED), calls  # different controls, shared calls
  for body, (_, answer) in zip(MIXED, answers, strict=True):
    (melody,) = answer["melodies"]
    events = midi_io.read_midi(base64.b64decode(melody["midi_base64"])).events
    assert events == expected(run, body)[0], body
    assert answer["seed"] == body["seed"] and answer["step"] == 20
    assert answer["run"] == str(run.workdir)
    for field, value in body.items():
      assert answer["settings"][field] in (value, [value, value]), field
    assert [(tuple(e["pitches"]), e["quarters"]) for e in melody["events"]] == [
      (e.pitches, float(e.quarters)) for e in events
    ]
  waltzing = answers[2][1]
  assert waltzing["resolved"]["time_signature"] == "3/4"
  assert waltzing["melodies"][0]["outcome"] == {"bars": 4.0, "bars_met": True}
  assert "M:3/4" in waltzing["melodies"][0]["abc"]
  assert answers[1][1]["resolved"]["mode"] == "minor"
  assert answers[3][1]["resolved"]["key_signature"] == "D"
  assert answers[3][1]["melodies"][0]["outcome"]["ends_on_tonic"]


def test_best_of_and_beam_search_give_sample_mains_notes(server, run):
  port, _ = server
  for body in (
    {"num_notes": 16, "seed": 2, "best_of": 3, "num_outputs": 2},
    {"num_notes": 16, "seed": 2, "beam_size": 2, "branch_factor": 2},
  ):
    status, answer = call(port, "POST", "/generate", body)
    assert status == 200, answer
    got = [
      midi_io.read_midi(base64.b64decode(m["midi_base64"])).events
      for m in answer["melodies"]
    ]
    assert got == expected(run, body), body


def test_a_primer_in_abc_is_the_same_primer_as_text(server):
  port, _ = server
  as_text = {"primer": "C4:1 D4:1 E4:2", "num_notes": 8, "seed": 9}
  as_abc = {
    "primer_abc": "X:1\nM:4/4\nL:1/4\nK:C\nC D E2 |",
    "num_notes": 8,
    "seed": 9,
  }
  one = call(port, "POST", "/generate", as_text)[1]
  other = call(port, "POST", "/generate", as_abc)[1]
  assert one["melodies"][0]["events"] == other["melodies"][0]["events"]
  assert other["settings"]["primer_abc"] == as_abc["primer_abc"]


def test_the_wav_link_is_the_melody_played(server):
  port, _ = server
  body = {"num_notes": 12, "seed": 4, "program": 40, "tempo": 120}
  answer = call(port, "POST", "/generate", body)[1]
  melody = answer["melodies"][0]
  assert answer["renderer"] == audio.renderer()
  status, data = call_bytes(port, melody["wav_url"])
  assert status == 200
  with wave.open(io.BytesIO(data)) as f:
    seconds = f.getnframes() / f.getframerate()
  quarters = sum(e["quarters"] for e in melody["events"])
  assert seconds == pytest.approx(quarters * 60 / 120 + 0.5, abs=0.01)
  assert melody["seconds"] == pytest.approx(seconds, abs=0.01)
  assert call_bytes(port, "/audio/nothing.wav")[0] == 404


def call_bytes(port, path):
  import http.client

  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
  connection.request("GET", path)
  response = connection.getresponse()
  data = response.read()
  connection.close()
  return response.status, data


BAD = [
  ({"mode": "dorian"}, "mode must be major or minor, got 'dorian'"),
  (
    {"style": "reel"},
    "style reel: not a style this run was trained with (valid: march, waltz)",
  ),
  (
    {"time_signature": "5/4"},
    "time_signature 5/4: not a time_signature this run was trained with "
    "(valid: 3/4, 4/4)",
  ),
  ({"key": "H"}, "key H: not a tonic (valid: C, B#"),
  ({"bars": -1}, "bars must be an integer >= 0, got -1"),
  (
    {"bars": 500, "num_notes": 16, "time_signature": "4/4"},
    "bars 500 in 4/4 needs at least",
  ),
  ({"end_on_tonic": "yes"}, "end_on_tonic must be true or false, got 'yes'"),
  ({"best_of": 0}, "best_of must be >= 1, got 0"),
  ({"best_of": 2, "beam_size": 2}, "give best_of or beam_size/branch_factor"),
  ({"program": 200}, "program must be 0-127, got 200"),
  ({"velocity": 0}, "velocity must be 1-127, got 0"),
  (
    {"primer": "C4:1", "primer_abc": "X:1\nK:C\nC"},
    "give primer or primer_abc, not both",
  ),
  (
    {"primer_abc": "X:1\nK:Q\nC"},
    "primer_abc: line 2, column 1: K: field: cannot read key 'Q'",
  ),
  (
    {"primer_abc": "X:1\nL:1/4\nK:C\nC9/7"},
    "primer_abc: duration '9/7' is not in this model's vocabulary",
  ),
]


@pytest.mark.parametrize("body, message", BAD, ids=range(len(BAD)))
def test_bad_controls_get_400_and_one_line(server, body, message):
  assert_refused(server[0], body, message)


def test_the_error_catalogue_lists_the_servers_control_errors():
  """docs/errors.md's table of the server's refusals has each case."""
  with open(os.path.join(PROJECT, "docs", "errors.md")) as f:
    text = f.read()
  section = text[text.index("## Requests the server refuses") :]
  end = section.find("\n## ")
  section = section if end < 0 else section[:end]  # to the next section
  rows = re.findall(r"^\| `(serve-[\w-]+)` \|.*\| `(.*)` \|$", section, re.M)
  assert len(rows) == len(BAD)
  for _, message in BAD:
    assert any(shown.startswith(message) for _, shown in rows), message


# ---------------------------------------------------------------- the page

# Waits for the result (or the error) of the page's Generate, then reports
# the staff, the audio and the links.
RESULT = """
const done = arguments[arguments.length - 1];
const start = Date.now();
(function poll() {
  const error = document.getElementById('error');
  const staff = document.querySelector('#melody-0 .staff svg');
  const player = document.querySelector('#melody-0 audio');
  const ready = player && (player.readyState >= 1 || player.error);
  if ((staff && ready) || !error.hidden || Date.now() - start > 60000) {
    done({
      error: error.hidden ? null : error.textContent,
      bars: staff ? document.querySelectorAll(
        '#melody-0 .staff svg .abcjs-bar').length : 0,
      notes: staff ? document.querySelectorAll(
        '#melody-0 .staff svg .abcjs-note').length : 0,
      duration: player ? player.duration : null,
      audioError: player && player.error ? player.error.code : null,
      links: Array.from(document.querySelectorAll('#melody-0 a')).map(
        a => ({cls: a.className, name: a.download})),
      search: location.search,
      primer: document.getElementById('primer').value,
      styles: Array.from(document.querySelectorAll('#style option')).map(
        o => o.value),
      modes: Array.from(document.querySelectorAll('#mode option')).map(
        o => o.value),
      resources: performance.getEntriesByType('resource').map(r => r.name),
    });
  } else { setTimeout(poll, 100); }
})();
"""


def _generate(driver, fields):
  """Sets the form's fields, clicks Generate, waits for the result."""
  driver.execute_script("document.getElementById('result').textContent='';")
  for name, value in fields.items():
    element = driver.find_element("id", name)
    if element.get_attribute("type") == "checkbox":
      if element.is_selected() != value:
        element.click()
    elif element.tag_name == "select":
      from selenium.webdriver.support.ui import Select

      Select(element).select_by_value(value)
    else:
      driver.execute_script("arguments[0].value = arguments[1]", element, value)
  driver.find_element("id", "generate").click()
  return driver.execute_async_script(RESULT)


def _downloaded(folder, name, timeout=20):
  path = folder / name
  deadline = time.monotonic() + timeout
  while not path.exists() and time.monotonic() < deadline:
    time.sleep(0.1)
  time.sleep(0.2)
  return path.read_bytes()


def _check_downloads(driver, folder, stem, melody):
  """Clicks each download link: each a valid file of this melody."""
  for link in driver.find_elements("css selector", "#melody-0 a"):
    link.click()
  events = midi_io.read_midi(_downloaded(folder, stem + ".mid")).events
  assert [(list(e.pitches), float(e.quarters)) for e in events] == [
    (e["pitches"], e["quarters"]) for e in melody["events"]
  ]
  assert _downloaded(folder, stem + ".abc").decode() == melody["abc"]
  with wave.open(io.BytesIO(_downloaded(folder, stem + ".wav"))) as f:
    seconds = f.getnframes() / f.getframerate()
  assert seconds == pytest.approx(melody["seconds"], abs=0.02)


def test_page_in_headless_chromium(server, tmp_path):
  problem = browser_problem()
  if problem:
    pytest.skip(problem)
  port, _ = server
  base = f"http://127.0.0.1:{port}/"
  downloads = tmp_path / "downloads"
  downloads.mkdir()
  with chromium(downloads) as driver:
    driver.set_script_timeout(90)
    driver.get(base)
    assert driver.title.startswith("melodyjax studio: step 20")
    fields = {
      "time_signature": "3/4",
      "mode": "minor",
      "style": "waltz",
      "bars": "4",
      "num_notes": "32",
      "seed": "11",
      "tempo": "90",
    }
    result = _generate(driver, fields)
    assert result["error"] is None, result
    assert result["styles"] == ["", "march", "waltz"]
    assert result["modes"] == ["", "major", "minor"]
    # The staff: 4 bars (a bar line each, the last one's double), notes.
    assert result["bars"] == 4 and result["notes"] > 0, result
    answer = call(
      port,
      "POST",
      "/generate",
      {**{k: int(v) if v.isdigit() else v for k, v in fields.items()}},
    )[1]
    melody = answer["melodies"][0]
    assert result["audioError"] is None
    assert result["duration"] == pytest.approx(melody["seconds"], abs=0.02)
    _check_downloads(driver, downloads, "melody_20_11_0", melody)
    # The address holds the settings: opening it makes the same melody.
    query = dict(urllib.parse.parse_qsl(result["search"][1:]))
    assert query == fields, query
    driver.get(base + result["search"])
    again = driver.execute_async_script(RESULT)
    staff = driver.find_element("css selector", "#melody-0 .staff")
    assert again["bars"] == 4 and again["error"] is None
    first_text = staff.text
    # Continue this melody: its notes become the primer of the next.
    driver.find_element("css selector", "#melody-0 .continue").click()
    time.sleep(0.2)
    cont = driver.execute_async_script(RESULT)
    assert cont["primer"] == melody["continue_primer"] and cont["error"] is None
    assert first_text  # the staff had text (titles, numbers) to compare
    # A bad value: the server's own one-line error on the page.
    bad = _generate(driver, {"temperature": "0", "bars": "0"})
    assert (
      bad["error"]
      == call(port, "POST", "/generate", {"temperature": 0})[1]["error"]
    )
    assert bad["error"].startswith("temperature must be > 0, got 0")
    # A primer pasted as ABC is sent as one (primer_abc).
    abc_primer = "X:1\nL:1/4\nK:C\nC D E2 |"
    good = _generate(driver, {"temperature": "1", "primer": abc_primer})
    assert good["error"] is None, good
    href = driver.find_element(
      "css selector", "#melody-0 .download-midi"
    ).get_attribute("href")
    song = midi_io.read_midi(base64.b64decode(href.split(",", 1)[1]))
    assert [(e.pitches, float(e.quarters)) for e in song.events[:3]] == [
      ((60,), 1.0),
      ((62,), 1.0),
      ((64,), 2.0),
    ]
    # Nothing but the server's own files was loaded.
    for name in bad["resources"]:
      assert name.startswith(base), name


def test_continue_primer_continues_the_melody(server):
  port, _ = server
  first = call(port, "POST", "/generate", {"num_notes": 12, "seed": 3})[1]
  melody = first["melodies"][0]
  body = {"primer": melody["continue_primer"], "num_notes": 8, "seed": 4}
  status, second = call(port, "POST", "/generate", body)
  assert status == 200, second
  n = len(melody["events"])
  assert second["melodies"][0]["events"][:n] == melody["events"]
