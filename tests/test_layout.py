"""The package's shape: no import cycle, dependencies pointing down the data
flow, and each layer importable without the layers above it."""

import ast
import os
import subprocess
import sys

import pytest

from tests.helpers import PROJECT

PACKAGE = os.path.join(PROJECT, "melodyjax")


def module_names() -> dict[str, str]:
  """{dotted module name: file path} of every module of the package."""
  modules = {}
  for root, _, names in os.walk(PACKAGE):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        dotted = os.path.relpath(path, PROJECT)[:-3].replace(os.sep, ".")
        modules[dotted.removesuffix(".__init__")] = path
  return modules


def import_graph() -> dict[str, set[str]]:
  """Module -> the package modules it imports, anywhere in its code
  (imports inside functions count: they are dependencies too)."""
  modules = module_names()
  graph = {name: set() for name in modules}
  for name, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      targets = []
      if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        targets = [f"{node.module}.{alias.name}" for alias in node.names]
        targets.append(node.module)
      for target in targets:
        while target and target not in modules:
          target = target.rpartition(".")[0]
        if target and target != name and target.count(".") > 0:
          graph[name].add(target)
  return graph


def test_import_graph_is_found():
  graph = import_graph()
  assert "melodyjax.training.loop" in graph
  assert "melodyjax.training.checkpoints" in graph["melodyjax.training.loop"]


def test_no_import_cycle():
  graph = import_graph()
  state = {}  # 1: on the path, 2: done

  def visit(name, path):
    state[name] = 1
    for target in sorted(graph[name]):
      if state.get(target) == 1:
        cycle = path[path.index(target) :] + [target]
        pytest.fail("import cycle: " + " -> ".join(cycle))
      if target not in state:
        visit(target, [*path, target])
    state[name] = 2

  for name in sorted(graph):
    if name not in state:
      visit(name, [name])


# The layers in the order the data flows; a module imports only modules of
# its own layer or of the layers before it (the package's top-level
# modules, `errors`, `files`, `checks`, come first).
LAYERS = (
  "music",
  "data",
  "model",
  "training",
  "sampling",
  "listening",
  "evaluation",
  "serving",
  "cli",
)


def _rank(module: str) -> int:
  parts = module.split(".")
  return (
    LAYERS.index(parts[1]) + 1 if parts[1:2] in ([p] for p in LAYERS) else 0
  )


def test_imports_point_down_the_layers():
  graph = import_graph()
  assert {name.split(".")[1] for name in graph if _rank(name)} == set(LAYERS)
  upward = sorted(
    f"{name} -> {target}"
    for name, targets in graph.items()
    for target in targets
    if _rank(target) > _rank(name)
  )
  assert upward == []


# Each layer, and what it must never import (directly or not).
FORBIDDEN = {
  "melodyjax.music": ("jax", "flax", "melodyjax.data", "melodyjax.model"),
  "melodyjax.data": ("jax", "flax", "melodyjax.model", "melodyjax.training"),
  "melodyjax.model": ("mido", "melodyjax.data", "melodyjax.training"),
  "melodyjax.training": ("melodyjax.listening", "melodyjax.sampling"),
  "melodyjax.sampling": (
    "optax",
    "melodyjax.training.state",
    "melodyjax.listening",
    "melodyjax.serving",
  ),
  "melodyjax.listening": (
    "melodyjax.evaluation",
    "melodyjax.serving",
    "starlette",
    "uvicorn",
  ),
  "melodyjax.serving": ("optax", "melodyjax.cli", "melodyjax.evaluation"),
  "melodyjax.evaluation.ngram": ("jax",),
  "melodyjax.listening.stats": ("jax",),
  "melodyjax.cli": ("jax",),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_do_not_import_what_lies_above_them(layer):
  graph = import_graph()
  members = [m for m in graph if m == layer or m.startswith(layer + ".")]
  code = (
    "import importlib, sys\n"
    f"for name in {members!r}:\n"
    "  importlib.import_module(name)\n"
    f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN[layer]!r}"
    f" or any(m == f or m.startswith(f + '.') for f in {FORBIDDEN[layer]!r})]\n"
    "print(' '.join(sorted(bad)))\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    cwd=PROJECT,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "", f"{layer} imports {result.stdout.strip()}"
