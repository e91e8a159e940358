"""Load a workdir's latest checkpoint and translate images X->Y or Y->X.

  from jdbw import inference
  tr = inference.Translator.from_workdir("workdirs/quickstart")
  y = tr.translate(x, "xy")                  # x: [N, 32, 32, c] or [32, 32, c] in [-1, 1]
  y = tr.translate(x, "xy", noise=z)         # z: [N, noise_dim] in [-1, 1]

No data pipeline is needed.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jdbw import checkpoint, methods, nets
from jdbw.errors import ConfigError


def read_config(workdir: str) -> dict:
  """The workdir's config.json record: method, model config and domain specs."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise ConfigError(f"--workdir: {workdir} has no config.json (not a jdbw training workdir)")
  with open(path) as f:
    return json.load(f)


def checkpoint_steps(workdir: str) -> list[int]:
  ckpt = checkpoint.Checkpointer(workdir)
  steps = ckpt.all_steps()
  ckpt.close()
  return steps


def load_run(workdir: str, step: int | None = None):
  """(method, state, config record) of a workdir's checkpoint (default: the newest one
  that restores)."""
  record = read_config(workdir)
  entry = methods.get(record["method"])
  method = entry.method(entry.config(**record["model"]))
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise ConfigError(f"--workdir: {workdir} has no checkpoint yet")
    if step is not None and step not in steps:
      raise ConfigError(f"--step: {workdir} has no checkpoint at step {step}; it has"
                        f" {steps}")
    abstract = jax.eval_shape(method.init_state, jax.random.PRNGKey(0))
    if step is None:   # the newest that restores (a damaged one is skipped, with a warning)
      state, _, _ = ckpt.restore_latest(abstract)
    else:
      state, _ = ckpt.restore(abstract, step)
  finally:
    ckpt.close()
  return method, state, record


class Translator:

  def __init__(self, method, state):
    self.method, self.state = method, state
    self.noise_dim = method.config.noise_dim
    self._translate = jax.jit(functools.partial(method.translate, state.params, state.spectral),
                              static_argnums=2)

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None) -> "Translator":
    method, state, _ = load_run(workdir, step)
    return cls(method, state)

  def translate(self, images, direction: str = "xy", noise=None, seed: int = 0) -> np.ndarray:
    """Translates float images in [-1, 1]; noise given or drawn U(-1, 1) from `seed`."""
    if direction not in ("xy", "yx"):
      raise ConfigError(f"--direction: got {direction!r}; expected 'xy' or 'yx'")
    if direction not in self.method.directions:
      raise ConfigError(f"--direction: this model translates {', '.join(self.method.directions)}"
                        f" only, not {direction}")
    images = np.asarray(images, np.float32)
    shape = self.method.example_shape(direction[0])
    single = images.ndim == len(shape)
    if single:
      images = images[None]
    if images.shape[1:] != shape:
      raise ConfigError(f"--input: inputs of shape {images.shape[1:]}; expected {shape}"
                        " per example")
    if not np.isfinite(images).all():
      raise ConfigError("--input: inputs hold non-finite values (NaN or inf)")
    if not self.method.point_domains and (images.min() < -1.001 or images.max() > 1.001):
      raise ConfigError(f"--input: images hold values in [{images.min():.4g},"
                        f" {images.max():.4g}]; expected [-1, 1]")
    if noise is None:
      noise = nets.sample_noise(jax.random.PRNGKey(seed), len(images), self.noise_dim)
    noise = jnp.asarray(noise, jnp.float32).reshape(len(images), self.noise_dim)
    out = np.asarray(self._translate(jnp.asarray(images), noise, direction))
    return out[0] if single else out
