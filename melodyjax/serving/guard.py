"""The server's guards for a day of traffic, around the app (ASGI).

Before a request reaches the app: its headers within `read_seconds` of
the connection (or of the answer before; `protocol`, else the connection
closes with 408), its token (`--token`, every route but /health, 401), its
body read whole within `read_seconds` more (408; a client that trickles or
never finishes holds no place in the queue) and at most
`max_body_bytes` (413), then a place among `max_queue` requests waiting or
running (503 with Retry-After when none is free: the queue never grows
past it). The app then has `request_seconds` to answer (504). Every refusal
is one line of JSON, `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hmac
import json
import urllib.parse

from uvicorn.protocols.http import h11_impl

from melodyjax import errors

OPEN_PATHS = frozenset({"/health"})  # no token, no queue: for monitoring
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclasses.dataclass(frozen=True)
class Settings:
  """The guards' limits.

  Attributes:
    max_queue: requests waiting or running at once; more get 503.
    request_seconds: the app's time to answer a request (504 past it).
    read_seconds: the headers' time to arrive (from the connection or the
      answer before), then the body's (408 past either).
    max_body_bytes: a body's size at most (413).
    retry_after_seconds: what a 503 asks the client to wait.
    token: the token every route but /health needs (None: none).
  """

  max_queue: int = 64
  request_seconds: float = 120.0
  read_seconds: float = 10.0
  max_body_bytes: int = 64 << 10
  retry_after_seconds: int = 1
  token: str | None = None

  def check(self) -> None:
    """Raises UsageError for a limit out of range, naming its flag."""
    for value, flag, low, high in (
      (self.max_queue, "--max_queue", 1, 100_000),
      (self.request_seconds, "--request_seconds", 0.01, 86_400),
      (self.read_seconds, "--read_seconds", 0.01, 3_600),
      (self.retry_after_seconds, "--retry_after_seconds", 1, 3_600),
    ):
      if not (isinstance(value, int | float) and low <= value <= high):
        raise errors.UsageError(
          f"{flag} must be {low:g} to {high:,}, got {value}"
        )
    if self.token is not None and (
      len(self.token) < 8 or not self.token.isprintable() or " " in self.token
    ):
      raise errors.UsageError(
        "--token must be at least 8 printable characters without spaces"
      )


def check_host(host: str, allow_remote: bool, token: str | None) -> str | None:
  """The warning to print for `host`, or None on loopback.

  Raises:
    UsageError: a host other than loopback without --allow_remote.
  """
  if host in LOOPBACK or host.startswith("127."):
    return None
  if not allow_remote:
    raise errors.UsageError(
      f"--host={host} is reachable from other machines: give --allow_remote "
      "(and --token) to serve there, or keep the default 127.0.0.1"
    )
  if token is None:
    return (
      f"warning: serving on {host} without --token: anyone who reaches "
      "this address can use the server"
    )
  return f"warning: serving on {host}; every route but /health needs the token"


COOKIE = b"melodyjax_token"  # what a browser sends after ?token=


def _given_token(scope) -> tuple[bytes, bool]:
  """(the token a request gives, whether in its address): its
  Authorization header's bearer token, else its cookie, else `?token=`."""
  for name, value in scope["headers"]:
    if name == b"authorization" and value[:7].lower() == b"bearer ":
      return value[7:].strip(), False
  for name, value in scope["headers"]:
    if name == b"cookie":
      for part in value.split(b";"):
        key, _, token = part.strip().partition(b"=")
        if key == COOKIE:
          return token, False
  query = urllib.parse.parse_qs(scope.get("query_string", b"").decode())
  token = query.get("token", [""])[-1].encode()
  return token, bool(token)


def _setting_cookie(send, token: bytes):
  """`send` that adds the token's cookie (HttpOnly, this site only) to the
  answer's headers."""

  async def send_with_cookie(message):
    if message["type"] == "http.response.start":
      cookie = b"%s=%s; Path=/; HttpOnly; SameSite=Strict" % (COOKIE, token)
      message = {
        **message,
        "headers": [*message.get("headers", []), (b"set-cookie", cookie)],
      }
    await send(message)

  return send_with_cookie


class _Refused(Exception):
  def __init__(self, status: int, message: str, headers=()):
    super().__init__(message)
    self.status, self.headers = status, list(headers)


class Guard:
  """ASGI middleware applying `Settings` to `app`; `stats()` for /health."""

  def __init__(self, app, settings: Settings):
    self.app = app
    self.settings = settings
    self.pending = 0
    self.refused: collections.Counter[int] = collections.Counter()
    self._token = None if settings.token is None else settings.token.encode()

  def stats(self) -> dict:
    """The queue's bound, its requests now, and refusals by status."""
    return {
      "max_queue": self.settings.max_queue,
      "pending": self.pending,
      "refused": {str(k): v for k, v in sorted(self.refused.items())},
    }

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    opened = scope["path"] in OPEN_PATHS
    started = held = False

    def release() -> None:
      nonlocal held
      if held:
        held = False
        self.pending -= 1

    async def send_watched(message):
      nonlocal started
      started = started or message["type"] == "http.response.start"
      if message["type"] == "http.response.body" and not message.get(
        "more_body"
      ):
        release()  # before the client can send its next request
      await send(message)

    try:
      if not opened and self._check_token(scope):
        send_watched = _setting_cookie(send_watched, self._token)
      replay = await self._read_body(scope, receive)
      if opened:
        return await self.app(scope, replay, send_watched)
      if self.pending >= self.settings.max_queue:
        raise _Refused(
          503,
          f"the server is busy ({self.settings.max_queue} requests waiting "
          "or running, melodyjax-serve --max_queue): try again shortly",
          [(b"retry-after", b"%d" % self.settings.retry_after_seconds)],
        )
      self.pending += 1
      held = True
      try:
        await asyncio.wait_for(
          self.app(scope, replay, send_watched), self.settings.request_seconds
        )
      except TimeoutError:
        if started:
          raise
        raise _Refused(
          504,
          f"the request took more than this server's "
          f"{self.settings.request_seconds:g} s "
          "(melodyjax-serve --request_seconds)",
        ) from None
      finally:
        release()
    except _Refused as e:
      self.refused[e.status] += 1
      await _answer(send, e.status, str(e), e.headers)

  def _check_token(self, scope) -> bool:
    """Refuses a request without the token (401); True where it came in
    the address (`?token=`, a browser's first visit: the answer sets the
    cookie that the page's later requests send)."""
    if self._token is None:
      return False
    given, in_query = _given_token(scope)
    # Constant time: the comparison does not tell how much of it matched.
    if not hmac.compare_digest(given, self._token):
      raise _Refused(
        401,
        "this server needs its token: send 'Authorization: Bearer TOKEN' "
        "(melodyjax-serve --token), or open /?token=TOKEN in a browser",
        [(b"www-authenticate", b"Bearer")],
      )
    return in_query

  async def _read_body(self, scope, receive):
    """A `receive` that gives the body, read whole here in time and size."""
    limit = self.settings.max_body_bytes
    declared = dict(scope["headers"]).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
      raise _Refused(413, _too_big(f"{int(declared):,} bytes", limit))
    chunks, size, more = [], 0, True
    deadline = asyncio.get_running_loop().time() + self.settings.read_seconds
    while more:
      left = deadline - asyncio.get_running_loop().time()
      try:
        message = await asyncio.wait_for(receive(), max(left, 0))
      except TimeoutError:
        raise _Refused(
          408,
          f"the body did not arrive within this server's "
          f"{self.settings.read_seconds:g} s "
          "(melodyjax-serve --read_seconds)",
        ) from None
      if message["type"] == "http.disconnect":
        return _replay(b"", receive, disconnected=True)
      chunks.append(message.get("body", b""))
      size += len(chunks[-1])
      if size > limit:
        raise _Refused(413, _too_big(f"more than {limit:,} bytes", limit))
      more = message.get("more_body", False)
    return _replay(b"".join(chunks), receive)


def _too_big(size: str, limit: int) -> str:
  return (
    f"the body is {size}, more than this server's {limit:,} "
    "(melodyjax-serve --max_body_bytes)"
  )


def _replay(body: bytes, receive, disconnected: bool = False):
  """A `receive` giving `body` once, then what the client sends next."""
  given = False

  async def replayed():
    nonlocal given
    if disconnected:
      return {"type": "http.disconnect"}
    if not given:
      given = True
      return {"type": "http.request", "body": body, "more_body": False}
    return await receive()

  return replayed


async def _answer(send, status: int, message: str, headers=()) -> None:
  body = json.dumps({"error": message}).encode()
  await send(
    {
      "type": "http.response.start",
      "status": status,
      "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
        *headers,
      ],
    }
  )
  await send({"type": "http.response.body", "body": body})


def protocol(read_seconds: float) -> type:
  """uvicorn's HTTP/1.1 protocol with a time limit on the headers: a
  connection whose next request's headers have not all arrived
  `read_seconds` after it opened (or after its last answer) gets 408 and
  is closed, so that half-sent headers hold no connection for long."""

  class HeaderTimed(h11_impl.H11Protocol):
    _header_timer = None

    def _arm(self) -> None:
      if self._header_timer is not None:
        self._header_timer.cancel()
      self._header_timer = self.loop.call_later(read_seconds, self._expired)

    def _expired(self) -> None:
      waiting = self.cycle is None or self.cycle.response_complete
      if waiting and not self.transport.is_closing():
        body = json.dumps(
          {
            "error": f"the request's headers did not arrive within this "
            f"server's {read_seconds:g} s (melodyjax-serve --read_seconds)"
          }
        ).encode()
        if self.conn.trailing_data[0]:  # a request half-sent
          self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: "
            b"application/json\r\nconnection: close\r\ncontent-length: "
            b"%d\r\n\r\n%s" % (len(body), body)
          )
        self.transport.close()

    def connection_made(self, transport) -> None:
      super().connection_made(transport)
      self._arm()

    def on_response_complete(self) -> None:
      super().on_response_complete()
      self._arm()

    def connection_lost(self, exc) -> None:
      if self._header_timer is not None:
        self._header_timer.cancel()
      super().connection_lost(exc)

  return HeaderTimed
