"""What the paired methods (pix2pix, BiCycleGAN) share: their config section and the
members of a method that trains on (x, y) pairs (`--pairing=same_draw`).

No batch weight (pairs fix the correspondence: docs/methods.md), the references' Adam
(2e-4, β1 0.5) and linear schedule, PatchGANs and U-Nets sized for CPU at 32x32, a
U-Net down to 1x1 (log2(resolution) levels), and on demand (`reverse`) a second,
independent model for Y -> X trained on the swapped pairs in the same run.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from jdbw import batch_weight, optim
from jdbw import config as config_lib
from jdbw.errors import ConfigError
from jdbw.methods import base
from jdbw.nets import layers


@dataclasses.dataclass(frozen=True)
class PairedConfig(config_lib.MarginalTranslatorConfig):
  """The paired methods' shared settings (widths 32 at 32x32; the references' 64 and
  their 3-layer PatchGAN are `--ngf=64 --ndf=64 --dis_layers=3`)."""
  lr: float = 2e-4
  ngf: int = 32
  ndf: int = 32
  dis_layers: int = 2
  lr_hold_steps: int = 0
  lr_linear_decay: int = 0
  l1_weight: float = config_lib.setting(
      100.0, "Paired methods: weight λ of the L1 distance between a translation and its"
      " pair y (pix2pix: 100; bicyclegan: 10, on the encoded code's translation).")
  reverse: bool = config_lib.setting(
      False, "Paired methods: also train the Y -> X model on the swapped pairs (a second,"
      " independent one), so that one run translates both ways.")

  BATCH_WEIGHTS = ("none",)
  MIN_RESOLUTION = 8   # a method's own floor (BiCycleGAN's encoder: 16)

  def check(self):
    config_lib.positive(self, "ngf", "ndf", "dis_layers")
    least = max(self.MIN_RESOLUTION, 2 ** (self.dis_layers + 2))
    levels = math.log2(self.resolution)
    if levels != int(levels) or self.resolution < least:
      raise ConfigError(f"--resolution: {self.resolution}; the paired methods' U-Net needs a"
                        f" power of 2 of at least {least}")
    if min(self.l1_weight, self.lr_hold_steps, self.lr_linear_decay) < 0:
      raise ConfigError("--l1_weight, --lr_hold_steps and --lr_linear_decay: expected >= 0")
    if self.lr_linear_decay and self.lr_decay_every:
      raise ConfigError("--lr_linear_decay and --lr_decay_every: choose one learning-rate"
                        " decay")
    self.check_method()

  def check_method(self):
    """A paired method's own checks (override)."""


class PairedTranslator(base.MarginalTranslator):
  """The members every paired method shares; a method adds its networks and steps."""

  paired = True
  unroll_d_steps = True

  def __init__(self, config: PairedConfig):
    self.config = c = config.validate()
    self.kw = dict(impl=c.conv_impl, dtype=layers.compute_dtype(c.compute_dtype))
    self.bw = batch_weight.BatchWeight.build("none", lambda: None)
    self.tx = {k: optim.adam_optimizer(c) for k in ("G", "D")}
    self.tx["W"] = self.bw.optimizer(c, c.w_lr)

  @property
  def directions(self) -> tuple[str, ...]:
    return ("xy", "yx") if self.config.reverse else ("xy",)

  @property
  def levels(self) -> int:
    """The U-Net's levels: down to 1x1."""
    return int(math.log2(self.config.resolution))

  def uniform_weights(self, batch) -> dict:
    """The generator step's per-sample weights: uniform (no batch weight), per source."""
    n = batch["x"].shape[0]
    return {f"w_{d[0]}": jnp.ones((n,), jnp.float32) for d in self.directions}

  def iteration(self, state, batch, axis_name=None):
    return base.run_iteration(self, state, batch, axis_name)
