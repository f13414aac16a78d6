"""benchmarks/results.json: figures as {name, value, unit}, merged by name."""

import json
import os

DEFAULT_PATH = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "results.json"
)


def merge(path: str, rows) -> None:
  """Adds or replaces (name, value, unit) rows, keeping the others."""
  entries = []
  if os.path.exists(path):
    with open(path) as f:
      entries = json.load(f)
  names = {name for name, _, _ in rows}
  entries = [e for e in entries if e["name"] not in names]
  entries += [
    {"name": n, "value": round(float(v), 4), "unit": u} for n, v, u in rows
  ]
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(entries, f, indent=1)
    f.write("\n")
  os.replace(tmp, path)
