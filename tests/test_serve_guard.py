"""The server's guards (issue 28): a token on every route but /health, files
only the server made, slow headers and bodies cut off, a bounded queue
answering 503 with Retry-After, a time limit per request, loopback unless
asked. A real `melodyjax-serve` on a free loopback port and real HTTP.
"""

import asyncio
import base64
import concurrent.futures
import os
import re
import signal
import socket
import threading
import time

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from melodyjax import errors
from melodyjax.serving import guard
from tests.helpers import PROJECT, run_python, start_server
from tests.helpers import http_call as request

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LEFT = "0123456789abcdef0123456789abcdef.mid"  # an earlier server's file


@pytest.fixture(scope="module")
def server(workdir, tmp_path_factory):
  """(port, process, files_dir) of a guarded server of the tiny run."""
  files_dir = tmp_path_factory.mktemp("served")
  (files_dir / LEFT).write_bytes(b"old")
  (files_dir / f".{LEFT}.123.tmp").write_bytes(b"half")  # a kill's
  (files_dir / "notes.txt").write_text("the user's own")
  port, process = start_server(
    f"--workdir={workdir}",
    "--warm_notes=16",
    "--max_batch=1",
    "--batch_wait_ms=0",
    "--max_queue=2",
    "--read_seconds=1",
    f"--token={TOKEN}",
    f"--files_dir={files_dir}",
    "--max_files=3",
  )
  yield port, process, files_dir
  process.send_signal(signal.SIGTERM)
  process.wait(timeout=60)


def raw(port, data: bytes, timeout=30) -> tuple[bytes, float]:
  """What the server answers to `data` sent as is, and the seconds it took."""
  with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
    s.sendall(data)
    start, reply = time.monotonic(), b""
    while chunk := s.recv(65536):
      reply += chunk
  return reply, time.monotonic() - start


def test_every_route_but_health_needs_the_token(server):
  port, _, _ = server
  assert request(port, "GET", "/health")[0] == 200
  wrong = TOKEN[:-1] + "X"  # as long, one character off
  for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"X": TOKEN}):
    for method, path in (
      ("GET", "/"),
      ("POST", "/generate"),
      ("GET", "/files/" + LEFT),
      ("GET", "/nothing"),
    ):
      status, answer_headers, answer = request(
        port, method, path, b"{}", headers
      )
      assert status == 401, (path, headers)
      assert answer_headers["www-authenticate"] == "Bearer"
      assert answer["error"].startswith("this server needs its token")
  status, _, answer = request(port, "POST", "/generate", {"num_notes": 4}, AUTH)
  assert status == 200 and len(answer["melodies"]) == 1


def test_a_browser_brings_the_token_in_the_address_then_its_cookie(server):
  port, _, _ = server
  status, headers, page = request(port, "GET", f"/?token={TOKEN}")
  assert status == 200 and b"<form" in page
  cookie = headers["set-cookie"].split(";")[0]
  assert cookie == f"melodyjax_token={TOKEN}"
  assert "HttpOnly" in headers["set-cookie"]
  # The page's own requests send the cookie, as the browser does.
  body = {"num_notes": 4}
  status, headers, answer = request(
    port, "POST", "/generate", body, {"Cookie": cookie}
  )
  assert status == 200 and "set-cookie" not in headers
  status, _, _ = request(
    port,
    "GET",
    answer["melodies"][0]["wav_url"],
    None,
    {"Cookie": f"a=b; {cookie}"},
  )
  assert status == 200
  for wrong in ("melodyjax_token=" + TOKEN[:-1] + "X", "other=" + TOKEN):
    status, _, _ = request(port, "POST", "/generate", body, {"Cookie": wrong})
    assert status == 401, wrong
  assert request(port, "GET", f"/?token={TOKEN}X")[0] == 401


def test_files_are_only_those_it_made(server):
  port, _, files_dir = server
  # What an earlier server (or a kill) left is gone; the user's file stays.
  left = set(os.listdir(files_dir))
  assert "notes.txt" in left and LEFT not in left
  assert not any(name.endswith(".tmp") for name in left)
  body = {"num_notes": 6, "num_outputs": 2, "seed": 5}
  status, _, answer = request(port, "POST", "/generate", body, AUTH)
  assert status == 200
  for melody in answer["melodies"]:
    status, headers, data = request(port, "GET", melody["midi_url"], None, AUTH)
    assert status == 200 and headers["content-type"] == "audio/midi"
    assert data == base64.b64decode(melody["midi_base64"])
  name = answer["melodies"][0]["midi_url"].rsplit("/", 1)[1]
  (files_dir / ("f" * 32 + ".mid")).write_bytes(b"not the server's")
  for path in (
    "/files/" + "f" * 32 + ".mid",  # in its folder, but not its own
    "/files/" + LEFT,
    "/files/notes.txt",
    "/files/" + name + "x",
    "/files/%2e%2e",
    "/files/..%2Fnotes.txt",
    "/files/../files/notes.txt",
    "/files/" + name + "/..",
    "/etc/passwd",
  ):
    token = f"Authorization: Bearer {TOKEN}\r\n".encode()
    reply, _ = raw(
      port,
      b"GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n"
      % (path.encode(), token),
    )
    assert reply.startswith(b"HTTP/1.1 404"), (path, reply[:100])
  # Only the newest --max_files=3 are kept (and served).
  for seed in range(3):
    body = {"num_notes": 4, "seed": seed}
    assert request(port, "POST", "/generate", body, AUTH)[0] == 200
  assert request(port, "GET", "/files/" + name, None, AUTH)[0] == 404
  kept = [n for n in os.listdir(files_dir) if n.endswith(".mid")]
  assert len(kept) == 3 + 1  # and the one the test put there


def test_slow_headers_and_bodies_are_cut_off(server):
  port, _, _ = server
  # Half of the headers, then nothing: 408 after --read_seconds=1.
  reply, seconds = raw(port, b"POST /generate HTTP/1.1\r\nHost: x\r\nCont")
  assert reply.startswith(b"HTTP/1.1 408") and 0.5 < seconds < 10, reply
  assert b"--read_seconds" in reply
  # The headers, and a body that never finishes.
  head = (
    b"POST /generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
    b"Content-Length: 40\r\n\r\n{" % TOKEN.encode()
  )
  reply, seconds = raw(port, head)
  assert reply.startswith(b"HTTP/1.1 408") and seconds < 10, reply
  assert b"the body did not arrive within" in reply
  # A body a byte at a time is cut off too, and others are served meanwhile.
  with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
    slow.sendall(head)
    slow.settimeout(0.2)
    start, reply = time.monotonic(), b""
    while not reply and time.monotonic() - start < 8:
      status, _, _ = request(port, "POST", "/generate", {"num_notes": 4}, AUTH)
      assert status == 200
      try:
        slow.sendall(b" ")
        reply = slow.recv(65536)
      except TimeoutError:
        pass
      except OSError:  # closed: its answer came before
        reply = slow.recv(65536)
  assert reply.startswith(b"HTTP/1.1 408"), reply
  assert time.monotonic() - start < 5


def test_overload_gets_503_with_retry_after_from_a_bounded_queue(server):
  port, _, _ = server
  before = request(port, "GET", "/health")[2]["guard"]
  # A shape not compiled yet: the first requests hold the queue's two
  # places for the compilation while the others arrive.
  body = {"num_notes": 1024, "num_outputs": 16}
  with concurrent.futures.ThreadPoolExecutor(12) as pool:
    answers = list(
      pool.map(
        lambda seed: request(
          port, "POST", "/generate", {**body, "seed": seed}, AUTH
        ),
        range(12),
      )
    )
  statuses = sorted(status for status, _, _ in answers)
  assert set(statuses) <= {200, 503} and statuses.count(503) >= 6, statuses
  assert statuses.count(200) >= 2
  for status, headers, answer in answers:
    if status == 503:
      assert headers["retry-after"] == "1"
      assert answer["error"].startswith("the server is busy (2 requests")
  after = request(port, "GET", "/health")[2]["guard"]
  assert after["max_queue"] == 2 and after["pending"] == 0
  refused = after["refused"].get("503", 0) - before["refused"].get("503", 0)
  assert refused == statuses.count(503)


def test_a_remote_address_needs_allow_remote(tmp_path):
  result = run_python(
    "-m", "melodyjax.cli.serve", f"--model={tmp_path}/a.mjx", "--host=0.0.0.0"
  )
  assert result.returncode == 2
  assert result.stderr.strip() == (
    "melodyjax-serve: error: --host=0.0.0.0 is reachable from other "
    "machines: give --allow_remote (and --token) to serve there, or keep "
    "the default 127.0.0.1"
  )
  result = run_python("-m", "melodyjax.cli.serve", "--token=short")
  assert result.returncode == 2
  assert result.stderr.strip() == (
    "melodyjax-serve: error: --token must be at least 8 printable "
    "characters without spaces"
  )
  result = run_python("-m", "melodyjax.cli.serve", "--max_queue=0")
  assert result.stderr.strip() == (
    "melodyjax-serve: error: --max_queue must be 1 to 100,000, got 0"
  )
  assert guard.check_host("127.0.0.1", False, None) is None
  assert "without --token" in guard.check_host("0.0.0.0", True, None)
  assert "needs the token" in guard.check_host("10.0.0.2", True, TOKEN)
  with pytest.raises(errors.UsageError, match="--allow_remote"):
    guard.check_host("::", False, TOKEN)


@pytest.fixture
def slow_app_port():
  """The port of a guard (1 s per request, a queue of 1) around an app
  whose /sleep takes its `seconds` query, in uvicorn on a thread."""

  async def sleep(request):
    await asyncio.sleep(float(request.query_params["seconds"]))
    return JSONResponse({"slept": True})

  app = guard.Guard(
    Starlette(routes=[Route("/sleep", sleep)]),
    guard.Settings(max_queue=1, request_seconds=1.0, read_seconds=1.0),
  )
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  config = uvicorn.Config(
    app, port=port, log_level="warning", http=guard.protocol(1.0)
  )
  server = uvicorn.Server(config)
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  while not server.started:
    time.sleep(0.01)
  yield port
  server.should_exit = True
  thread.join(timeout=10)


def test_every_request_has_a_time_limit(slow_app_port):
  status, _, answer = request(slow_app_port, "GET", "/sleep?seconds=0.01")
  assert status == 200 and answer == {"slept": True}
  start = time.monotonic()
  status, _, answer = request(slow_app_port, "GET", "/sleep?seconds=30")
  assert status == 504 and time.monotonic() - start < 5
  assert answer == {
    "error": "the request took more than this server's 1 s "
    "(melodyjax-serve --request_seconds)"
  }
  # Its place in the queue is free again.
  assert request(slow_app_port, "GET", "/sleep?seconds=0")[0] == 200


def test_settings_are_checked():
  with pytest.raises(errors.UsageError, match="--request_seconds must be"):
    guard.Settings(request_seconds=0).check()
  with pytest.raises(errors.UsageError, match="--read_seconds must be"):
    guard.Settings(read_seconds=1e9).check()
  guard.Settings(token=TOKEN).check()


def test_the_soak_benchmark_runs_and_every_answer_is_as_expected(workdir):
  """benchmarks/bench_soak.py for a few seconds (the table in BENCHMARKS.md
  is its 10-minute run)."""
  result = run_python(
    "-m",
    "benchmarks.bench_soak",
    f"--workdir={workdir}",
    "--seconds=3",
    "--warm_seconds=1",
    "--clients=2",
    "--max_queue=2",
    "--overload_clients=8",
    "--max_batch=1",  # fewer shapes to compile
    "--kinds=small,file,health,bad_json,bad_field,too_large,outside",
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
  found = re.search(
    r"answered as expected: ([\d,]+) of ([\d,]+);", result.stdout
  )
  assert found and found.group(1) == found.group(2) != "0", result.stdout
  assert re.search(r"server resident memory: start [\d.]+ MiB", result.stdout)
  row = re.search(r"^\| 2 \| 8 \| (\d+) \| (\d+) \| 0 \|$", result.stdout, re.M)
  assert row and int(row.group(2)) >= 1, result.stdout[-1500:]


# Each id of docs/errors.md's "The server's guards", by the test above that
# checks it.
GUARD_CASES = {
  "serve-remote-host": test_a_remote_address_needs_allow_remote,
  "serve-token-short": test_a_remote_address_needs_allow_remote,
  "serve-limit-range": test_a_remote_address_needs_allow_remote,
  "serve-no-token": test_every_route_but_health_needs_the_token,
  "serve-not-its-file": test_files_are_only_those_it_made,
  "serve-slow-headers": test_slow_headers_and_bodies_are_cut_off,
  "serve-slow-body": test_slow_headers_and_bodies_are_cut_off,
  "serve-busy": test_overload_gets_503_with_retry_after_from_a_bounded_queue,
  "serve-too-slow": test_every_request_has_a_time_limit,
}


def test_every_guard_case_is_catalogued():
  with open(os.path.join(PROJECT, "docs", "errors.md")) as f:
    text = f.read().split("## The server's guards")[1]
    section = text.split("\n## ")[0]  # up to the next section
  assert re.findall(r"^\| `([\w-]+)` \|", section, re.M) == list(GUARD_CASES)
