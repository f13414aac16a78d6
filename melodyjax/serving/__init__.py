"""The generation server (`melodyjax-serve`): a restored model behind HTTP.

  model      what the server generates from (a workdir or a model file)
  requests   a JSON body to a checked request, with the server's limits
  batcher    concurrent requests grouped into one compiled sampler call
  guard      token, read and answer time limits, the bounded queue (ASGI)
  store      the files the server made, the only ones it hands out
  answer     the JSON answer (settings, events, ABC, MIDI, WAV links)
  studio     the page at / (studio.html with the run's choices)
  app        the Starlette app: POST /generate, GET /health, GET /,
             GET /files/NAME, GET /audio/NAME.wav, GET /abcjs.js

It sits above sampling and listening, and below the command line.
"""
