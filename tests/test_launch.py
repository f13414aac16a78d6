"""The README's launch commands name real configs, fields and flags."""

import importlib
import os
import re
import shlex

import pytest

from tests.helpers import PROJECT


def readme_train_commands() -> list[list[str]]:
  """Every `train_main.py` command in the README's code blocks, as argv."""
  with open(os.path.join(PROJECT, "README.md")) as f:
    text = f.read()
  commands = []
  for block in re.findall(r"```(?:bash)?\n(.*?)```", text, re.S):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.split("#")[0].rstrip(" &")
      argv = shlex.split(line)
      if "train_main.py" in argv:
        commands.append(argv[argv.index("train_main.py") :])
  return commands


def test_readme_launch_commands_are_valid():
  import train_main

  commands = readme_train_commands()
  # Conditioned, overrides, the Transformer, one GPU, 8 GPUs, two hosts,
  # two CPU processes, O'Neill's, the folk corpus, The Session's tunes,
  # fine-tuning: each by its config and workdir.
  assert [
    (argv[1], argv[2]) for argv in commands if argv[1].startswith("--config=")
  ] == [
    ("--config=configs/cpu.py", "--workdir=runs/esac_all"),
    ("--config=configs/default.py", "--workdir=/tmp/mj/run1"),
    ("--config=configs/transformer.py", "--workdir=runs/esac_tf"),
    ("--config=configs/gpu.py", "--workdir=runs/esac_gpu"),
    ("--config=configs/gpu.py", "--workdir=runs/esac_gpu8"),
    ("--config=configs/gpu.py", "--workdir=/shared/runs/esac_2hosts"),
    ("--config=configs/tiny.py", "--workdir=/tmp/mj/2proc"),
    ("--config=configs/tiny.py", "--workdir=/tmp/mj/2proc"),
    ("--config=configs/oneills.py", "--workdir=runs/oneills"),
    ("--config=configs/folk.py", "--workdir=runs/folk"),
    ("--config=configs/folk.py", "--workdir=runs/session"),
    ("--config=configs/finetune.py", "--workdir=runs/mine"),
  ]
  assert all(argv[1].startswith("--config=") for argv in commands)
  flags = set(train_main.FLAGS)
  seen = set()
  for argv in commands:
    args = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--"))
    path = args.pop("config")
    assert os.path.exists(os.path.join(PROJECT, path)), path
    module = path.removesuffix(".py").replace("/", ".")
    config = importlib.import_module(module).get_config()
    for name in args:
      if name.startswith("config."):
        node = config
        for part in name.split(".")[1:]:
          assert part in node, f"{' '.join(argv)}: no field {name}"
          node = node[part]
      else:
        assert name in flags, f"{' '.join(argv)}: no flag --{name}"
        seen.add(name)
    if "coordinator_address" in args:
      assert re.fullmatch(r"[\w.]+:\d+", args["coordinator_address"])
      assert 0 <= int(args["process_id"]) < int(args["num_processes"])
  assert {"coordinator_address", "num_processes", "process_id"} <= seen


@pytest.mark.parametrize("name", ["gpu", "cpu", "tiny"])
def test_accelerator_config_is_a_variant_of_default(name):
  from configs import default, gpu, tiny  # noqa: F401

  config = {"gpu": gpu, "tiny": tiny}.get(name)
  if config is None:
    from configs import cpu as config
  config = config.get_config()
  assert set(config) == set(default.get_config())
  if name == "gpu":
    assert config.model.dtype == "bfloat16"
    assert config.model.lstm_impl == "auto"
    # Divides evenly over 1, 2, 4 or 8 GPUs and TPU cores.
    assert config.train.batch_size >= 1024
    assert config.train.batch_size % 8 == 0


@pytest.mark.accelerator
def test_gpu_config_trains_and_samples_on_an_accelerator(tmp_path):
  """configs/gpu.py for a few steps on the machine's GPU or TPU."""

  from tests.test_corpus import run_python, write_tunes

  midi_dir = tmp_path / "midi"
  write_tunes(midi_dir, 40, 9, name="t{}.mid")
  # The tests force CPU for themselves; this command must see the device.
  env = {
    k: v
    for k, v in os.environ.items()
    if k not in ("JAX_PLATFORMS", "XLA_FLAGS")
  }
  result = run_python(
    "train_main.py",
    "--config=configs/gpu.py",
    f"--workdir={tmp_path / 'run'}",
    f"--config.data.midi_dir={midi_dir}",
    f"--config.data.dataset_dir={tmp_path / 'data'}",
    "--config.train.num_train_steps=4",
    "--config.train.eval_every_steps=2",
    "--config.train.checkpoint_every_steps=2",
    "--config.train.progress=False",
    # The test corpus has fewer windows than the config's batch.
    "--config.train.batch_size=16",
    "--config.eval.batch_size=16",
    env=env,
    timeout=600,
  )
  launch = [
    line for line in result.stdout.splitlines() if "train_main.py:" in line
  ][:2]
  if launch and "(cpu:" in launch[0]:
    pytest.skip("JAX sees no GPU or TPU here: " + launch[0])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "compute dtype bfloat16" in launch[1], launch
  assert "global batch 16" in launch[1]
  wavs = list((tmp_path / "run" / "samples" / "4").glob("*.wav"))
  assert len(wavs) == 8
