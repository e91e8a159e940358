"""What the Colab notebook (`notebooks/jdbw_colab.ipynb`) calls, kept here so that it is
tested like the rest: the setting chosen for a backend, configs from a flagfile through
the library's own flag definitions (no shell call of the CLI), and the figures a run
wrote.

  from experiments import notebook
  setting = notebook.choose_setting(notebook.backend())
  method, run, specs = notebook.configure(setting.flagfile, workdir="runs/demo", steps=300)
  jdbw.train.train(method, run, specs)
"""

from __future__ import annotations

import dataclasses
import os

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


@dataclasses.dataclass(frozen=True)
class Setting:
  name: str
  flagfile: str        # absolute path of a flagfile shipped with the package
  needs_tfds: bool     # data through TFDS (a data_dir, prepared once) or embedded
  about: str


SETTINGS = {
    "cpu": Setting("quickstart", os.path.join(CONFIGS, "quickstart.flags"), False,
                   "embedded scikit-learn digits <-> SR-digits (half zeros), narrow networks:"
                   " a few minutes on 2 CPU cores, no download"),
    "accelerator": Setting("mnist_srmnist", os.path.join(CONFIGS, "mnist_srmnist.flags"), True,
                           "the paper's MNIST <-> SR-MNIST (TFDS `mnist`), paper-size"
                           " networks and critic steps"),
}


REQUIREMENTS = os.path.join(os.path.dirname(CONFIGS), "..", "requirements.txt")


def pinned(package: str, requirements: str = REQUIREMENTS) -> str:
  """`package==version` as `requirements.txt` pins it (one clear line if it does not)."""
  with open(requirements) as f:
    for line in f:
      name, sep, version = line.split("#")[0].strip().partition("==")
      if sep and name.lower() == package.lower():
        return f"{name}=={version}"
  raise ValueError(f"{requirements}: no '{package}==<version>' pin")


def tpu_install_spec(requirements: str = REQUIREMENTS) -> str:
  """`jax[tpu]` at the jax version the repository pins (so a TPU runtime keeps it)."""
  return "jax[tpu]==" + pinned("jax", requirements).partition("==")[2]


def backend() -> str:
  import jax
  return jax.default_backend()


def choose_setting(backend_name: str) -> Setting:
  """TPU or GPU: the paper's MNIST <-> SR-MNIST setting; CPU: the embedded quickstart."""
  if backend_name in ("tpu", "gpu", "cuda", "rocm"):
    return SETTINGS["accelerator"]
  if backend_name == "cpu":
    return SETTINGS["cpu"]
  raise ValueError(f"backend {backend_name!r}: expected cpu, gpu or tpu")


def configure(flagfile: str, **overrides):
  """(method, RunConfig, domain specs) of `flagfile` with `overrides` (flag name ->
  value), parsed by the training entrypoint's own flags; re-running resets every flag
  to its default first, so a notebook cell can be run again with other values."""
  from absl import flags
  from experiments import common
  from jdbw import methods
  common.define_training_flags()
  fv = flags.FLAGS
  fv.unparse_flags()
  argv = ["jdbw", f"--flagfile={flagfile}"]
  argv += [f"--{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
           for k, v in overrides.items() if v is not None]
  fv(argv)
  common.quiet_library_logs()   # orbax logs dozens of INFO records per checkpoint
  run = common.run_config().validate()
  method = methods.from_config(common.model_config(common.FLAGS.model))
  return method, run, common.domain_specs()


FIGURES = ("figure2_transfer.png", "figure3_weights.png", "figure4_noise.png")


def figures(workdir: str) -> list[str]:
  """Paths of the paper's Figures 2-4 a run wrote (those that exist)."""
  paths = [os.path.join(workdir, "figures", f) for f in FIGURES]
  return [p for p in paths if os.path.isfile(p)]
