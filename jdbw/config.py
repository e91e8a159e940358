"""Config sections every method shares, defined (and checked) once.

A method's config is a frozen dataclass that inherits the sections it uses and adds its
own fields; a section's default may be changed by redeclaring the field in the method's
config (MUNIT trains with weight decay 1e-4, JD without). Fields stay flat, so flags,
`config.json` and `dataclasses.asdict` keep one name per setting, and workdirs saved
before the sections existed load unchanged. `validate()` runs every section's check
(in MRO order), then the method's own `check()`; errors are one line naming the flag.
"""

from __future__ import annotations

import dataclasses

from jdbw import batch_weight as bw_lib
from jdbw.nets import layers
from jdbw.errors import ConfigError


def positive(config, *fields):
  """One line naming the first of `fields` below 1."""
  for f in fields:
    if getattr(config, f) < 1:
      raise ConfigError(f"--{f}: got {getattr(config, f)}; expected >= 1")


def one_of(config, field, allowed):
  """One line if `field` is not one of `allowed`."""
  if getattr(config, field) not in allowed:
    raise ConfigError(f"--{field}: got {getattr(config, field)!r}; expected one of {allowed}")


@dataclasses.dataclass(frozen=True)
class ImageConfig:
  """The two domains as the networks see them, and the noise (style) size."""
  noise_dim: int = 8
  channels_x: int = 1
  channels_y: int = 1
  resolution: int = 32

  def _check_images(self):
    positive(self, "noise_dim", "channels_x", "channels_y", "resolution")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Adam for every part (the authors' settings), the critic schedule d, step decay."""
  d_steps: int = 5                 # critic updates per generator update
  lr: float = 1e-4
  b1: float = 0.5
  b2: float = 0.999
  weight_decay: float = 0.0        # coupled (added to the gradient), as the authors' code
  lr_decay_every: int = 0          # 0 = constant learning rate
  lr_decay_rate: float = 0.5

  def _check_optimizer(self):
    positive(self, "d_steps")
    if self.lr <= 0:
      raise ConfigError(f"--lr: got {self.lr}; expected > 0")
    if self.weight_decay < 0 or self.lr_decay_every < 0 or not 0 < self.lr_decay_rate <= 1:
      raise ConfigError("--weight_decay and --lr_decay_every must be >= 0 and"
                        " --lr_decay_rate in (0, 1]")


@dataclasses.dataclass(frozen=True)
class BatchWeightConfig:
  """Batch weight (`jdbw.batch_weight.BatchWeight`): mode, normalisation, W, schedule.

  Clip schedule of the softmax weights, in generator steps (iterations): uniform before
  bw_start, t = 0.25 + (step - bw_start) / (bw_full - bw_start) after. The authors count
  critic iterations: their MNIST (0, 1000) at d = 5 is (0, 200) here.
  """
  batch_weight: str = "two_sided"
  weight_norm: str = "softmax"
  w_features: int = 64
  w_lr: float = 0.0                # weight nets' learning rate; 0 = lr (the paper: one lr)
  bw_start: int = 0
  bw_full: int = 200

  # The modes a method offers (a method's config narrows it).
  BATCH_WEIGHTS = bw_lib.MODES

  def _check_batch_weight(self):
    allowed = type(self).BATCH_WEIGHTS
    if self.batch_weight not in allowed:
      raise ConfigError(f"--batch_weight: got {self.batch_weight!r}; this model takes one"
                        f" of {allowed}")
    one_of(self, "weight_norm", bw_lib.NORMS)
    positive(self, "w_features")
    if self.w_lr < 0:
      raise ConfigError(f"--w_lr: got {self.w_lr}; expected >= 0 (0 = --lr)")
    if self.bw_start < 0 or self.bw_full <= self.bw_start:
      raise ConfigError(f"--bw_start/--bw_full: got {self.bw_start}/{self.bw_full}; expected"
                        " 0 <= bw_start < bw_full (generator steps)")


@dataclasses.dataclass(frozen=True)
class ExecutionConfig:
  """How the networks compute (kernels, precision), not what they are."""
  conv_impl: str = "auto"          # layers.CONV_IMPLS: same function, different kernels
  compute_dtype: str = "float32"   # 'bfloat16': bf16 compute, float32 params and losses

  def _check_execution(self):
    one_of(self, "conv_impl", layers.CONV_IMPLS)
    one_of(self, "compute_dtype", layers.COMPUTE_DTYPES)


@dataclasses.dataclass(frozen=True)
class MethodConfig(ImageConfig, OptimizerConfig, BatchWeightConfig, ExecutionConfig):
  """All shared sections; a method's config derives from it and adds `check()`."""

  def check(self):
    """The method's own checks (override)."""

  def validate(self):
    """Every section's check, then the method's; returns self."""
    for cls in reversed(type(self).__mro__):
      for name, fn in vars(cls).items():
        if name.startswith("_check_"):
          fn(self)
    self.check()
    return self


SECTIONS = (ImageConfig, OptimizerConfig, BatchWeightConfig, ExecutionConfig)


def section_fields(section) -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(section))
