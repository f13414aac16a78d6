"""examples/quickstart.ipynb runs from its first cell to its last."""

import os

import pytest

from tests.helpers import PROJECT

NOTEBOOK = os.path.join(PROJECT, "examples", "quickstart.ipynb")


def test_quickstart_notebook_runs(monkeypatch, tmp_path):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  # The kernel imports this checkout's melodyjax and configs.
  path = os.environ.get("PYTHONPATH")
  monkeypatch.setenv(
    "PYTHONPATH", os.pathsep.join(filter(None, [PROJECT, path]))
  )
  monkeypatch.setenv("QUICKSTART_DIR", str(tmp_path))
  # One CPU device, as on a laptop: not the test suite's 4 host devices,
  # whose all-reduce can time out on a machine loaded by other work.
  flags = os.environ.get("XLA_FLAGS", "").split()
  monkeypatch.setenv(
    "XLA_FLAGS",
    " ".join(f for f in flags if "force_host_platform_device_count" not in f),
  )
  client = nbclient.NotebookClient(
    notebook,
    timeout=240,
    kernel_name="python3",
    resources={"metadata": {"path": PROJECT}},
  )
  client.execute()  # raises CellExecutionError naming the cell that failed
  outputs = [
    output
    for cell in notebook.cells
    if cell.cell_type == "code"
    for output in cell.outputs
  ]
  html = [
    o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})
  ]
  assert any("ABCJS.renderAbc" in h for h in html)  # the staff
  assert any("<audio" in h for h in html)  # the player
  texts = "".join(output.get("text", "") for output in outputs)
  assert "'bars_met': True" in texts and "sound: " in texts
  assert (tmp_path / "quickstart.mjx").is_file()
