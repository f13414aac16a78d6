"""The generation server (`melodyjax-serve`): a restored model behind HTTP.

  model      what the server generates from (one loader: a workdir today)
  requests   a JSON body to a checked request, with the server's limits
  batcher    concurrent requests grouped into one compiled sampler call
  guard      token, read and answer time limits, the bounded queue (ASGI)
  store      the files the server made, the only ones it hands out
  app        the Starlette app: POST /generate, GET /health, GET /,
             GET /files/NAME

It sits above sampling and listening, and below the command line.
"""
