"""Config sections every method shares, defined (and checked) once.

A method's config is a frozen dataclass that inherits the sections it uses and adds its
own fields; a section's default may be changed by redeclaring the field in the method's
config (MUNIT trains with weight decay 1e-4, JD without). Each field is declared once with
its help text (`setting`), and the entry points' flags are generated from the fields.
Fields stay flat, so flags,
`config.json` and `dataclasses.asdict` keep one name per setting, and workdirs saved
before the sections existed load unchanged. `validate()` runs every section's check
(in MRO order), then the method's own `check()`; errors are one line naming the flag.
"""

from __future__ import annotations

import dataclasses
import math

from jdbw import batch_weight as bw_lib
from jdbw.nets import layers
from jdbw.errors import ConfigError


def setting(default, help: str, *, choices: tuple | None = None, flag: str | None = None):
  """A config field and the one definition of its setting: the default, the help text
  of its command-line flag, its choices (read from the library's constants) and, where
  the flag's name is not the field's (`--eval_samples` for `EvalConfig.samples`), that
  name. The entry points generate their flags from these
  (`experiments.common.define_model_flags`, `define_section_flags`); a method config that
  redeclares a field to change its default keeps this help."""
  return dataclasses.field(default=default,
                           metadata={"help": help, "choices": choices, "flag": flag})


def flag_name(field: dataclasses.Field) -> str:
  """The command-line name of a setting."""
  return field.metadata.get("flag") or field.name


def help_of(configs, name: str) -> tuple[str | None, tuple | None]:
  """(help, choices) of setting `name`: from the first of `configs` (classes) whose field
  carries them (a redeclared field has a bare default)."""
  for cls in configs:
    for klass in cls.__mro__:
      f = getattr(klass, "__dataclass_fields__", {}).get(name)
      if f is not None and f.metadata.get("help"):
        return f.metadata["help"], f.metadata.get("choices")
  return None, None


def finite(config) -> None:
  """One line naming the first float setting that is NaN or infinite."""
  for f in dataclasses.fields(config):
    v = getattr(config, f.name)
    if isinstance(v, float) and not math.isfinite(v):
      raise ConfigError(f"--{f.name}: got {v}; expected a finite number")


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
  noise_dim: int = setting(
      8,
      "Noise size d (8 MNIST-SRMNIST, 16 MNIST-SVHN); munit: the style dimension.")
  channels_x: int = 1
  channels_y: int = 1
  resolution: int = 32

  def _check_images(self):
    positive(self, "noise_dim", "channels_x", "channels_y", "resolution")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Adam for every part (the authors' settings), the critic schedule d, step decay."""
  # critic updates per generator update
  d_steps: int = setting(5, "Critic steps per generator step.")
  lr: float = setting(1e-4, "Adam learning rate (G, D and W).")
  b1: float = setting(0.5, "Adam beta1.")
  b2: float = setting(0.999, "Adam beta2.")
  # coupled (added to the gradient), as the authors' code
  weight_decay: float = setting(0.0, "Coupled L2 weight decay (authors' code: 1e-4).")
  # 0 = constant learning rate
  lr_decay_every: int = setting(
      0,
      "Halve (x lr_decay_rate) the learning rates every N steps; 0 = constant.")
  lr_decay_rate: float = setting(0.5, "Step decay factor.")

  def _check_optimizer(self):
    positive(self, "d_steps")
    for f in ("b1", "b2"):
      if not 0 <= getattr(self, f) < 1:
        raise ConfigError(f"--{f}: got {getattr(self, f)}; expected Adam's beta in [0, 1)")
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
  batch_weight: str = setting(
      "two_sided",
      "two_sided = JD-BW (Algorithm 1) / MUNIT, CycleGAN, DistanceGAN + BW; none = no "
      "batch weight; one_sided = Algorithm 2 (jd: marginal D, weights on X only; "
      "distancegan --one_sided).", choices=bw_lib.MODES)
  weight_norm: str = setting(
      "softmax",
      "sigmoid (Algorithm 1) or softmax over the batch with clipping (authors' code).",
      choices=bw_lib.NORMS)
  w_features: int = setting(64, "Weight-net base width (DCGAN: 64).")
  # weight nets' learning rate; 0 = lr (the paper: one lr)
  w_lr: float = setting(0.0, "Weight nets' Adam learning rate; 0 = --lr (the paper's single rate).")
  bw_start: int = setting(0, "Generator step where batch weight starts (uniform weights before).")
  bw_full: int = setting(
      200,
      "Generator step where the clip t = 0.25 + (step - bw_start) / (bw_full - "
      "bw_start) reaches 1.25 (it keeps growing after). Units: generator steps "
      "(iterations of 1 G + d D steps); the authors count critic iterations, so their "
      "bw_full = 1000 at d = 5 is 200 here.")

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
  # layers.CONV_IMPLS: same function, different kernels
  conv_impl: str = setting(
      "auto",
      "Convolution kernels: XLA's convolution or im2col + matmul (same function and "
      "parameters); auto = im2col on CPU, where it is faster, XLA elsewhere.",
      choices=layers.CONV_IMPLS)
  # 'bfloat16': bf16 compute, float32 params and losses
  compute_dtype: str = setting(
      "float32",
      "Network compute dtype; parameters, optimiser state and losses stay float32.",
      choices=layers.COMPUTE_DTYPES)

  def _check_execution(self):
    one_of(self, "conv_impl", layers.CONV_IMPLS)
    one_of(self, "compute_dtype", layers.COMPUTE_DTYPES)


@dataclasses.dataclass(frozen=True)
class MethodConfig(ImageConfig, OptimizerConfig, BatchWeightConfig, ExecutionConfig):
  """All shared sections; a method's config derives from it and adds `check()`."""

  def check(self):
    """The method's own checks (override)."""

  def validate(self):
    """Every float finite, every section's check, then the method's; returns self."""
    finite(self)
    for cls in reversed(type(self).__mro__):
      for name, fn in vars(cls).items():
        if name.startswith("_check_"):
          fn(self)
    self.check()
    return self


@dataclasses.dataclass(frozen=True)
class MarginalTranslatorConfig(MethodConfig):
  """The defaults the translators with one critic per domain share (MUNIT, CycleGAN,
  DistanceGAN): no batch weight, one critic step per generator step, and the clip
  relaxed by generator step 1000 (the authors' MUNIT + BW, counted at d = 1)."""
  batch_weight: str = "none"
  d_steps: int = 1
  bw_full: int = 1000


SECTIONS = (ImageConfig, OptimizerConfig, BatchWeightConfig, ExecutionConfig)


def section_fields(section) -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(section))
