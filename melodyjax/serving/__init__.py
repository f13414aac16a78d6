"""The generation server (`melodyjax-serve`): a restored model behind HTTP.

  model      what the server generates from (one loader: a workdir today)
  requests   a JSON body to a checked request, with the server's limits
  batcher    concurrent requests grouped into one compiled sampler call
  app        the Starlette app: POST /generate, GET /health, GET /

It sits above sampling and listening, and below the command line.
"""
