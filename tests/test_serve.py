"""The generation server: a real `melodyjax-serve` process on a
free loopback port, spoken to with real HTTP (http.client and raw sockets).
"""

import base64
import concurrent.futures
import dataclasses
import json
import signal
import socket
import time

import pytest

from melodyjax.listening import abc
from melodyjax.music import midi_io
from melodyjax.sampling import generate
from melodyjax.sampling import request as request_lib
from melodyjax.training import runs
from tests.helpers import assert_refused, call, run_python, serving


@pytest.fixture(scope="module")
def server(workdir):
  """(port, process) of a server of the tiny run, stopped after the module."""
  with serving(
    f"--workdir={workdir}",
    "--warm_notes=16",
    "--max_batch=4",
    "--batch_wait_ms=20",
  ) as server:
    yield server


def without_links(answer):
  """The answer's melodies less their file links (new names each time)."""
  return [
    {k: v for k, v in melody.items() if k != "midi_url"}
    for melody in answer["melodies"]
  ]


def test_health_and_page(server):
  port, _ = server
  status, health = call(port, "GET", "/health")
  assert status == 200 and health["status"] == "ok"
  assert health["step"] == 10
  assert [1, 1, 16] in health["compiled_shapes"]  # warmed at start
  status, page = call(port, "GET", "/")
  assert status == 200 and "<form" in page and "/generate" in page
  assert call(port, "GET", "/nothing")[0] == 404
  assert call(port, "GET", "/generate")[0] == 405


def test_generate_gives_sample_mains_notes(server, workdir):
  port, _ = server
  body = {
    "primer": "C4:1 D4:0.5",
    "num_notes": 12,
    "num_outputs": 3,
    "temperature": [0.9, 1.0],
    "top_p": 0.95,
    "seed": 7,
  }
  status, answer = call(port, "POST", "/generate", body)
  assert status == 200, answer
  assert len(answer["melodies"]) == 3
  run = runs.from_workdir(str(workdir))
  request = request_lib.Request(
    num_outputs=3, num_notes=12, temperature=(0.9, 1.0), top_p=0.95, seed=7
  )
  expected = generate.generate(
    run, request, generate.parse_primer_text(body["primer"])
  )
  for i, (melody, events) in enumerate(
    zip(answer["melodies"], expected, strict=True)
  ):
    assert melody["pitch"][:2] == ["C4", "D4"]
    song = midi_io.read_midi(base64.b64decode(melody["midi_base64"]))
    assert song.events == events
    assert melody["num_events"] == len(events) <= 14
    assert melody["abc"] == abc.to_abc(
      events, key_signature="C", tempo_bpm=100.0, number=i + 1
    )
  again = call(port, "POST", "/generate", body)[1]
  assert without_links(again) == without_links(answer)


def test_generate_with_the_short_term_model_gives_sample_mains_notes(
  server, workdir
):
  port, _ = server
  body = {
    "primer": "C4:1 D4:0.5 C4:1 D4:0.5",
    "num_notes": 12,
    "num_outputs": 2,
    "short_term": [0.5, 0.3],
    "short_term_order": 3,
    "seed": 3,
  }
  status, answer = call(port, "POST", "/generate", body)
  assert status == 200, answer
  run = runs.from_workdir(str(workdir))
  request = request_lib.Request(
    num_outputs=2,
    num_notes=12,
    short_term=(0.5, 0.3),
    short_term_order=3,
    seed=3,
  )
  expected = generate.generate(
    run, request, generate.parse_primer_text(body["primer"])
  )
  plain = generate.generate(
    run,
    dataclasses.replace(request, short_term=(0.0, 0.0)),
    generate.parse_primer_text(body["primer"]),
  )
  got = [
    midi_io.read_midi(base64.b64decode(m["midi_base64"])).events
    for m in answer["melodies"]
  ]
  assert got == expected and got != plain


def test_concurrent_requests_share_sampler_calls(server):
  port, _ = server
  before = call(port, "GET", "/health")[1]
  bodies = [{"num_notes": 10, "seed": i} for i in range(16)]
  with concurrent.futures.ThreadPoolExecutor(16) as pool:
    answers = list(
      pool.map(lambda b: call(port, "POST", "/generate", b), bodies)
    )
  assert all(status == 200 for status, _ in answers), answers
  after = call(port, "GET", "/health")[1]
  served = after["requests"] - before["requests"]
  calls = after["sampler_calls"] - before["sampler_calls"]
  assert served == 16 and calls < 16, (served, calls)
  # Batched or not, a seed gives the same notes.
  alone = call(port, "POST", "/generate", bodies[5])[1]
  assert without_links(alone) == without_links(answers[5][1])


BAD = [
  (b"{bad", "the body is not JSON: Expecting property name"),
  (b'{"temperature": NaN}', "the body is not JSON: NaN is not JSON"),
  (b"[1, 2]", "the body must be a JSON object"),
  (b"\xff\xfe", "the body is not UTF-8 text"),
  ({"num_notes": "64"}, "num_notes must be an integer, got '64'"),
  ({"num_notes": 1e9}, "num_notes must be an integer, got 1000000000.0"),
  ({"seed": True}, "seed must be an integer, got True"),
  ({"temperature": "hot"}, "temperature must be a number, got 'hot'"),
  ({"temperature": [1, 2, 3]}, "temperature must be a number or a [pitch"),
  ({"primer": 5}, "primer must be a text, got 5"),
  ({"nmu_notes": 5}, "unknown field 'nmu_notes' (fields: primer,"),
  ({"temperature": 0}, "temperature must be > 0, got 0"),
  ({"top_p": 1.5}, "top_p must be in (0, 1], got 1.5"),
  ({"top_k": -1}, "top_k must be >= 0 (0 keeps every token), got -1"),
  ({"short_term": [0.2, 1]}, "short_term must be in [0, 1), got 0.2,1"),
  ({"short_term_order": 1.5}, "short_term_order must be an integer, got 1.5"),
  ({"num_outputs": 0}, "num_outputs must be >= 1, got 0"),
  (
    {"num_notes": 100000000},
    "num_notes must be at most 8,192 (events per melody), got 100,000,000",
  ),
  (
    {"num_notes": 5000},
    "num_notes must be at most 1,024 on this server (melodyjax-serve "
    "--max_notes), got 5,000",
  ),
  ({"num_outputs": 17}, "num_outputs must be at most 16 on this server"),
  ({"seed": 2**70}, "seed must be an integer from -9223372036854775808"),
  ({"tempo": 1e308}, "tempo must be at most 1000 quarters per minute"),
  ({"primer": "C4"}, "primer event 'C4' is not PITCH:DURATION"),
  ({"primer": "C4:0.7"}, "primer: duration '7/10' is not in this model's"),
  (
    {"primer": " ".join(["C4:1"] * 65)},
    "primer: 65 events, more than this server's 64",
  ),
]


@pytest.mark.parametrize("body, message", BAD, ids=range(len(BAD)))
def test_bad_requests_get_400_and_one_line(server, body, message):
  assert_refused(server[0], body, message)


def test_body_size_is_limited(server):
  port, _ = server
  status, answer = call(port, "POST", "/generate", b" " * (65 << 10))
  assert status == 413 and "more than this server's 65,536" in answer["error"]
  # A chunked body with no length is cut off at the limit too.
  with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
    sock.sendall(
      b"POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      b"Content-Type: application/json\r\n\r\n"
    )
    chunk = b" " * 32768
    for _ in range(3):
      sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    sock.sendall(b"0\r\n\r\n")
    reply = sock.recv(65536).decode()
  assert reply.startswith("HTTP/1.1 413"), reply[:200]


def test_slow_client_does_not_hold_up_others(server):
  port, _ = server
  body = json.dumps({"num_notes": 4, "seed": 3}).encode()
  with socket.create_connection(("127.0.0.1", port), timeout=60) as slow:
    # Half of the headers, then nothing for a while.
    slow.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Le")
    start = time.monotonic()
    status, _ = call(port, "POST", "/generate", {"num_notes": 4}, timeout=30)
    assert status == 200 and time.monotonic() - start < 20
    assert call(port, "GET", "/health")[0] == 200
    slow.sendall(b"ngth: %d\r\n\r\n" % len(body))
    time.sleep(0.5)
    slow.sendall(body[:5])  # the body trickles in too
    time.sleep(0.5)
    slow.sendall(body[5:])
    reply = b""
    while b"}]" not in reply and len(reply) < 1 << 20:
      data = slow.recv(65536)
      if not data:
        break
      reply += data
  assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


def test_server_is_still_up_after_every_bad_request(server):
  port, process = server
  assert process.poll() is None
  assert call(port, "GET", "/health")[1]["status"] == "ok"


def test_a_missing_model_file_is_refused_in_one_line(tmp_path):
  result = run_python(
    "-m", "melodyjax.cli.serve", f"--model={tmp_path}/tune.mjx", "--port=0"
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
    f"melodyjax-serve: error: model file not found: {tmp_path}/tune.mjx"
  ]
  result = run_python("-m", "melodyjax.cli.serve", "--max_notes=0")
  assert result.returncode == 2
  assert result.stderr.strip() == (
    "melodyjax-serve: error: --max_notes must be 1 to 8,192, got 0"
  )


def test_sigterm_stops_the_server(server):
  """Last in this module: stops the module's server."""
  _, process = server
  process.send_signal(signal.SIGTERM)
  stdout, stderr = process.communicate(timeout=60)
  assert process.returncode == 0, stderr[-2000:]
  assert "melodyjax-serve: stopped (SIGTERM)" in stdout
  assert "Traceback" not in stderr
