"""The Colab notebook: paired with its percent script, stripped, its TPU branch's choice,
and a headless run on CPU with a few steps (what CI executes)."""

import os
import re
import subprocess
import sys

import pytest

from experiments import notebook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB = os.path.join(ROOT, "notebooks", "jdbw_colab.ipynb")
PY = os.path.join(ROOT, "notebooks", "jdbw_colab.py")


def test_notebook_is_paired_with_its_script_and_stripped():
  import jupytext
  import nbformat
  nb = nbformat.read(NB, as_version=4)
  script = jupytext.read(PY)
  assert [(c.cell_type, c.source) for c in nb.cells] == [
      (c.cell_type, c.source) for c in script.cells], (
          "notebooks/jdbw_colab.ipynb and .py differ: edit the .py, then"
          " `jupytext --to ipynb notebooks/jdbw_colab.py`")
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, cell.source[:80]
  text = open(NB).read()
  # No path of a developer's machine (Colab's own /content/drive is the only absolute one).
  assert not re.search(r"/(work|root|home|tmp|Users|usr)/", text)
  assert "google.colab" in text and "parameters" in text


def test_backends_choose_their_settings():
  for backend in ("tpu", "gpu"):
    s = notebook.choose_setting(backend)
    assert s.name == "mnist_srmnist" and s.needs_tfds and os.path.isfile(s.flagfile)
  cpu = notebook.choose_setting("cpu")
  assert cpu.name == "quickstart" and not cpu.needs_tfds
  with pytest.raises(ValueError, match="backend"):
    notebook.choose_setting("quantum")
  # The TPU setting's flagfile builds the paper's configuration (nothing trains). In a
  # fresh process: configure() defines the training entrypoint's flags, which would clash
  # with another entrypoint module a test imported into this worker.
  script = """
from experiments import notebook
method, run, specs = notebook.configure(notebook.choose_setting("tpu").flagfile,
                                        workdir="runs/x", steps=7)
assert (specs["x"].source, specs["y"].source) == ("tfds:mnist", "tfds:mnist"), specs
assert specs["y"].transform == "sr" and run.steps == 7 and run.workdir == "runs/x"
assert method.config.d_steps == 5 and method.config.batch_weight == "two_sided"
method, run, specs = notebook.configure(notebook.choose_setting("cpu").flagfile)
assert specs["x"].source == "digits" and run.steps == 300 and method.config.d_steps == 2
print("ok")
"""
  out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.slow
def test_notebook_runs_headless_on_cpu(tmp_path):
  import nbformat
  from nbclient import NotebookClient
  nb = nbformat.read(NB, as_version=4)
  at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
  # As papermill does: a cell after the parameters cell overrides them.
  nb.cells.insert(at + 1, nbformat.v4.new_code_cell(
      f"STEPS = 10\nQUICK = True\nWORKDIR = {str(tmp_path / 'run')!r}"))
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  run = tmp_path / "run"
  for name in ("figure2_transfer.png", "figure3_weights.png", "figure4_noise.png",
               "confusion.png"):
    assert (run / "figures" / name).is_file(), name
  assert (run / "report.md").is_file() and (run / "checkpoints" / "10").is_dir()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) >= 5   # Figures 2-4, the confusion matrix, the translation
  text = "".join(o.get("text", "") for o in outputs)
  assert "setting: quickstart" in text and "backend: cpu" in text


def test_colab_installs_the_pinned_versions(tmp_path):
  """The install cell takes the repository's requirements.txt (no floating jax, flax,
  optax, orbax) and a TPU runtime's jax[tpu] at the pinned jax version."""
  from experiments import notebook
  with open(notebook.REQUIREMENTS) as f:
    pins = dict(line.strip().split("==") for line in f if "==" in line and
                not line.startswith("#"))
  assert notebook.pinned("jax") == f"jax=={pins['jax']}"
  assert notebook.tpu_install_spec() == f"jax[tpu]=={pins['jax']}"
  assert notebook.pinned("Flax") == f"flax=={pins['flax']}"
  bad = tmp_path / "requirements.txt"
  bad.write_text("jax>=0.4\n")
  with pytest.raises(ValueError, match="no 'jax==<version>' pin"):
    notebook.pinned("jax", str(bad))
  text = open(PY).read()
  assert '"requirements.txt"' in text and "tpu_install_spec()" in text
  assert 'jdbw @ git+' not in text and '"jax[tpu]"]' not in text
