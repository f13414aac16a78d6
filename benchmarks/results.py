"""What the benchmarks share: results.json, targets and the table.

`results.json` holds figures as {name, value, unit}, merged by name; each
benchmark script states its targets in a literal `TARGETS = {name: (op,
bound)}` dict, read here without importing the script. Run the benchmarks
from the repository root as modules: `python -m benchmarks.bench_train`.
"""

import ast
import json
import os

from melodyjax import files

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
  files.write_json(path, entries)


def read_targets(script: str) -> dict[str, tuple[str, float]]:
  """The literal `TARGETS = {...}` of a benchmark script ({} if none)."""
  try:
    with open(script) as f:
      tree = ast.parse(f.read())
  except (OSError, SyntaxError):
    return {}
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(
      isinstance(t, ast.Name) and t.id == "TARGETS" for t in node.targets
    ):
      try:
        return dict(ast.literal_eval(node.value))
      except ValueError:
        return {}
  return {}


def target_text(targets, name: str, value: float) -> tuple[str, str]:
  if name not in targets:
    return "", ""
  op, bound = targets[name]
  met = value < bound if op == "<" else value >= bound
  return f"{op} {bound:g}", "yes" if met else "NO"


def format_table(entries, targets) -> str:
  """The figures as an aligned text table, grouped by benchmark prefix."""
  rows = [("name", "value", "unit", "target", "met")]
  for entry in sorted(entries, key=lambda e: e["name"].split("_")[0]):
    value = entry["value"]
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    rows.append(
      (
        entry["name"],
        text,
        entry["unit"],
        *target_text(targets, entry["name"], value),
      )
    )
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = []
  for i, row in enumerate(rows):
    cells = [
      cell.rjust(w) if j == 1 else cell.ljust(w)
      for j, (cell, w) in enumerate(zip(row, widths, strict=True))
    ]
    lines.append("  ".join(cells).rstrip())
    if i == 0:
      lines.append("  ".join("-" * w for w in widths))
  return "\n".join(lines)
