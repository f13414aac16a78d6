"""What several test modules share: tiny corpora, configs and subprocesses.

Test modules import from here (or use the fixtures of `conftest.py`), never
from one another.
"""

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction as F

import jax
import numpy as np

from configs import tiny
from melodyjax.data import build
from melodyjax.data import config as data_config_lib
from melodyjax.listening import audio, hook
from melodyjax.model import model as model_lib
from melodyjax.music import midi_io
from melodyjax.music.events import Event, Song
from melodyjax.training import checkpoints, loop, runs
from melodyjax.training import state as state_lib
from melodyjax.training import workdir as workdir_lib

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tune(i, length=12):
  """A C major tune that differs per i."""
  scale = [60, 62, 64, 65, 67, 69, 71, 72]
  events = []
  for j in range(length):
    events.append(
      Event((scale[(i * 3 + j * (i % 5 + 1)) % 8],), F(1 + (i + j) % 2, 2))
    )
    if j == 5:
      events.append(Event((), F(1, 2)))
  return Song(events, key_signature="C")


def waltz(i):
  """A 3/4 tune in A minor, starting with a one-beat pickup."""
  scale = [57, 59, 60, 62, 64, 65, 67, 69]
  events = [Event((64,), F(1))]
  for j in range(14):  # bars of a half and a quarter note
    events.append(Event((scale[(i + 2 * j) % 8],), F(2 if j % 2 == 0 else 1)))
  events.append(Event((57,), F(3)))
  return Song(events, time_signature=(3, 4), key_signature="Am")


def write_tunes(folder, count, spread, name="tune{:02d}.mid"):
  """`count` tunes of 14 + i % spread events into a new folder."""
  folder.mkdir(exist_ok=True)
  for i in range(count):
    midi_io.write_midi(tune(i, 14 + i % spread), folder / name.format(i))
  return folder


def start_server(*flags, timeout=240):
  """(port, process) of a `melodyjax-serve FLAGS` on a free loopback port,
  once it listens; its stdout is read up to that line."""
  process = subprocess.Popen(
    [sys.executable, "-m", "melodyjax.cli.serve", "--port=0", *flags],
    cwd=PROJECT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    line = process.stdout.readline()
    if not line:
      break
    found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
    if found:
      return int(found.group(1)), process
  process.kill()
  raise AssertionError("no server: " + process.communicate()[1][-3000:])


def http_call(port, method, path, body=None, headers=None, timeout=120):
  """(status, headers, parsed JSON or bytes) of one request to loopback;
  a body that is not bytes is sent as JSON."""
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
  data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
  connection.request(method, path, body=data, headers=headers or {})
  response = connection.getresponse()
  data = response.read()
  connection.close()
  kind = response.getheader("content-type", "")
  return (
    response.status,
    {k.lower(): v for k, v in response.getheaders()},
    json.loads(data) if "json" in kind else data,
  )


def strict_json(text: str):
  """json.loads that refuses NaN and infinities, as strict readers do."""

  def refuse(name):
    raise ValueError(f"not JSON: {name}")

  return json.loads(text, parse_constant=refuse)


def check_whole_file(path: str) -> None:
  """Fails unless the file is whole, by its kind."""
  with open(path, "rb") as f:
    data = f.read()
  if path.endswith(".json"):
    strict_json(data.decode())
  elif path.endswith(".png"):
    assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")
  elif path.endswith(".wav"):
    samples, _ = audio.read_wav(path)
    assert samples.size > 0
  elif path.endswith(".mid"):
    midi_io.read_midi(path)
  elif path.endswith(".html"):
    assert data.decode().endswith("</html>\n")
  elif path.endswith(".md"):
    assert data.decode().endswith("\n")
  elif path.endswith(".abc"):
    text = data.decode()
    complete = text.startswith("%abc-2.1\nX:") and text.endswith("|]\n")
    assert complete, text[-200:]
  else:
    raise AssertionError(f"unexpected file {path}")


def run_python(*args, env=None, timeout=300):
  """`python ARGS` in the project folder, output captured as text."""
  return subprocess.run(
    [sys.executable, *args],
    capture_output=True,
    text=True,
    cwd=PROJECT,
    timeout=timeout,
    env=env,
  )


def tiny_config(midi_dir, data_dir, **train_overrides):
  """configs/tiny.py on a test corpus, with larger held-out splits."""
  config = tiny.get_config()
  config.data.midi_dir = str(midi_dir)
  config.data.dataset_dir = str(data_dir)
  config.data.valid_fraction = 0.15
  config.data.test_fraction = 0.1
  for key, value in train_overrides.items():
    config.train[key] = value
  return config


def train(config, workdir):
  """Trains as train_main.py does: samples and the audition page included."""
  return loop.train_and_evaluate(
    config, str(workdir), hooks=[hook.AuditionHook(config)]
  )


def train_conditioned(root, num_train_steps: int):
  """ROOT/run, a tiny run conditioned on metre, mode and style, trained on
  24 4/4 major tunes in ROOT/midi/march and 24 3/4 minor ones in waltz."""
  midi = root / "midi"
  for folder, make in (("march", tune), ("waltz", waltz)):
    (midi / folder).mkdir(parents=True)
    for i in range(24):
      midi_io.write_midi(make(i), midi / folder / f"t{i:02d}.mid")
  config = tiny_config(midi, root / "data")
  # The waltzes are transpositions of one another within the scale, so the
  # leak-free split would put them all in one split: each file is its own.
  config.data.group_splits = False
  for group in ("metre", "mode", "style"):
    config.model[f"condition_{group}"] = True
  config.train.num_train_steps = num_train_steps
  train(config, root / "run")
  return root / "run"


def abstract_state(workdir):
  """The shapes of a run's train state, from its config and vocabularies."""
  config = workdir_lib.read_config(str(workdir))
  pitch_vocab, duration_vocab = workdir_lib.read_vocabs(str(workdir))
  model = runs.create_model(
    config, pitch_vocab, duration_vocab, workdir_lib.read_labels(str(workdir))
  )
  tx = state_lib.create_optimizer(config.train)
  ema = state_lib.ema_settings(config.train)[0] > 0
  carry_state = config.train.get("carry_state", False)
  carry_rows = config.train.batch_size if carry_state else 0
  return jax.eval_shape(
    lambda k: state_lib.create_train_state(
      k, model, tx, 16, ema=ema, carry_rows=carry_rows
    ),
    jax.random.key(0),
  )


def final_params(workdir):
  """(train state, data position) of a run's latest checkpoint."""
  abstract = abstract_state(workdir)
  manager = checkpoints.create_manager(
    str(workdir), max_to_keep=5, keep_best=0, enable_async=False
  )
  state, data = checkpoints.restore(manager, manager.latest_step(), abstract)
  manager.close()
  return state, data


def small_dataset(midi_dir, out):
  """The dataset of a few dozen test tunes, with splits large enough to
  score (15% validation, 10% test), built in one process."""
  return build.build_dataset(
    midi_dir,
    out,
    data_config_lib.CorpusConfig(valid_fraction=0.15, test_fraction=0.1),
    workers=1,
    progress=False,
  )


def resume_after_step_10(config, tmp_path):
  """Trains `config` (20 steps, checkpoints at 10 and 20) uninterrupted and
  again as if interrupted after step 10 (the same workdir without step 20,
  then the same command); returns the final (state, data position) of
  each, (full, cut)."""
  config.checkpoint.max_to_keep = 5
  full = tmp_path / "full"
  loop.train_and_evaluate(config, str(full))
  cut = tmp_path / "cut"
  shutil.copytree(full, cut)
  shutil.rmtree(cut / "checkpoints" / "20")
  loop.train_and_evaluate(config, str(cut))
  return final_params(full), final_params(cut)


def assert_trees_equal(a, b) -> None:
  """Fails unless two trees hold bit-for-bit equal leaves."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


@contextlib.contextmanager
def counting_step_traces(module=model_lib.MelodyModel):
  """Counts the traces of `module.step` (one per compilation of a
  sampler) inside the block, caches cleared at its start: yields a dict
  whose 'count' holds the number."""
  traces = {"count": 0}
  original = module.step

  def counting_step(self, *args, **kwargs):
    traces["count"] += 1
    return original(self, *args, **kwargs)

  module.step = counting_step
  try:
    jax.clear_caches()
    yield traces
  finally:
    module.step = original


@contextlib.contextmanager
def serving(*flags, timeout=240):
  """(port, process) of `start_server(*flags)`, stopped (SIGTERM) when the
  block ends if it still runs."""
  port, process = start_server(*flags, timeout=timeout)
  try:
    yield port, process
  finally:
    if process.poll() is None:
      process.send_signal(signal.SIGTERM)
      process.wait(timeout=60)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def browser_problem() -> str | None:
  """Why no headless Chromium can run here (None: it can)."""
  if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    return (
      f"no browser: {CHROMIUM} and {CHROMEDRIVER} are needed (Debian: "
      "apt-get install chromium chromium-driver; `make test` installs them "
      "when run as root)"
    )
  try:
    import selenium  # noqa: F401
  except ImportError:
    return "selenium is not installed (pip install -e '.[dev]')"
  return None


@contextlib.contextmanager
def chromium(download_dir=None):
  """A headless Chromium driven by selenium (the system's driver, never one
  fetched online), downloading into `download_dir` if given."""
  import tempfile

  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service

  profile = tempfile.mkdtemp(prefix="chromium-profile-")
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    f"--user-data-dir={profile}",
    "--window-size=1200,1600",
  ):
    options.add_argument(flag)
  if download_dir is not None:
    options.add_experimental_option(
      "prefs",
      {
        "download.default_directory": str(download_dir),
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
      },
    )
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  try:
    yield driver
  finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def call(port, method, path, body=None, headers=None, timeout=120):
  """(status, parsed JSON or text) of one request (`http_call`'s)."""
  status, _, answer = http_call(port, method, path, body, headers, timeout)
  return status, answer.decode() if isinstance(answer, bytes) else answer


def assert_refused(port, body, message, status=400):
  """POST /generate `body` is refused with `status` and one line of JSON
  starting with `message`."""
  got, answer = call(port, "POST", "/generate", body)
  assert got == status, answer
  assert set(answer) == {"error"} and "\n" not in answer["error"]
  assert answer["error"].startswith(message), answer["error"]
