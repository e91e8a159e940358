"""Batch weight (the paper's contribution): weight logits, normalisations, clipping.

Names follow the paper (docs/paper_map.md). For a batch x ~ P_x of size m (global, across devices)
and y ~ Q_y:

- schemes (Appendix B.1) give weight logits a:
  concat:    a_x = [ W(x, G_xy(x))],                 a_y = [-W(G_yx(y), y)]
  single:    a_x = [ W(x)],                          a_y = [-W(G_yx(y))]
  composite: a_x = [ W_x(x), -W_y(G_xy(x))],         a_y = [-W_x(G_yx(y)), W_y(y)]
- normalisations turn each logit vector into weights w and average them:
  sigmoid (Algorithm 1): w = σ(a), combined weight ω = ½(1 + w) / m;
  softmax (Eq. 6, authors' code): w = softmax_batch(clip(a - mean(a), -t, t)),
  combined weight ω = ½(1/m + w).
  Both give ω that sums to ≈1 (softmax: exactly 1) over the batch, so the critic
  terms are weighted means (Algorithm 1's sums divided by the constant m).
- Algorithm 2 (one-sided): ω = softmax over W(x) alone, no uniform half.

Batch-level operations (softmax, centring mean, m) run over the global batch when
`axis_name` names the device axis; with `axis_name=None` the same code runs on one
device.

`BatchWeight` bundles these into the one component a method composes (weight
networks, their logits, normalisation, clip schedule, W's loss and optimiser); see
docs/methods.md for adding it to a new method.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.lax import stop_gradient as sg

from jdbw import losses, parallel
from jdbw.losses import uniform_weights

MODES = ("two_sided", "one_sided", "none")
SCHEMES = ("composite", "concat", "single")
NORMS = ("sigmoid", "softmax")
PHASES = ("generator", "discriminator")   # the step whose update trains W


def clip_value(step, bw_start: int = 0, bw_full: int = 1000):
  """t(step) = 0.25 + max(0, (step - bw_start) / (bw_full - bw_start)), in generator steps.

  The authors' schedule, whose steps count critic iterations (see `JDConfig.bw_full`).
  """
  span = max(bw_full - bw_start, 1)
  return 0.25 + jnp.maximum(0.0, (jnp.asarray(step, jnp.float32) - bw_start) / span)


def weight_logits(scheme: str, W: Callable[..., jax.Array], x, g_xy_x, g_yx_y, y):
  """Weight logits (a_x list, a_y list) of Appendix B.1's `scheme`.

  `W(name, *images)` applies weight network `name` ('W' for concat and single,
  'W_x' / 'W_y' for composite) and returns one logit per sample.
  """
  if scheme == "composite":
    return [W("W_x", x), -W("W_y", g_xy_x)], [-W("W_x", g_yx_y), W("W_y", y)]
  if scheme == "single":
    return [W("W", x)], [-W("W", g_yx_y)]
  if scheme == "concat":
    return [W("W", x, g_xy_x)], [-W("W", g_yx_y, y)]
  raise ValueError(f"unknown weighting scheme {scheme!r}; expected one of {SCHEMES}")


def softmax_weights(a, t, axis_name: str | None = None):
  """softmax over the global batch of clip(a - mean(a), -t, t); sums to 1 globally.

  The max/min weight ratio is at most e^{2t}. `t=None` skips centring and clipping
  (Algorithm 2 as printed).
  """
  a = a.astype(jnp.float32)
  if t is not None:
    m = parallel.global_size(a.shape[0], axis_name)
    a = jnp.clip(a - parallel.psum(a.sum(), axis_name) / m, -t, t)
  # Global log-sum-exp; the max is only for stability, so it carries no gradient.
  # (pmax has no differentiation rule: stop the gradient before it, not after.)
  local_max = sg(a).max()
  shift = jax.lax.pmax(local_max, axis_name) if axis_name else local_max
  denom = parallel.psum(jnp.exp(a - shift).sum(), axis_name)
  return jnp.exp(a - shift) / denom


def combined_weights(logits: Sequence[jax.Array], norm: str, t=None,
                     axis_name: str | None = None, uniform=False):
  """Loss weights ω of one domain from its weight logits (see module docstring).

  `uniform` (a bool or a traced bool, e.g. step < bw_start) gives ω = 1/m instead.
  """
  m = parallel.global_size(logits[0].shape[0], axis_name)
  if norm == "sigmoid":
    w = sum(jax.nn.sigmoid(a.astype(jnp.float32)) for a in logits) / len(logits)
    omega = 0.5 * (1.0 + w) / m
  elif norm == "softmax":
    w = sum(softmax_weights(a, t, axis_name) for a in logits) / len(logits)
    omega = 0.5 * (1.0 / m + w)
  else:
    raise ValueError(f"unknown weight normalisation {norm!r}; expected one of {NORMS}")
  return jnp.where(uniform, 1.0 / m, omega)


def one_sided_weights(a, t=None, axis_name: str | None = None):
  """Algorithm 2: w = softmax(W(x_1..m)) over the global batch (optionally clipped)."""
  return softmax_weights(a, t, axis_name)


def normalise_two_sided(logits: dict, norm: str, n_local: int, step, bw_start: int,
                        bw_full: int, axis_name: str | None = None):
  """(ω_x, ω_y) from {'x': [a...], 'y': [a...]} logits; uniform without logits or
  before bw_start. Each sums to 1 over the global batch (or a whole evaluation sample)."""
  uniform = uniform_weights(n_local, axis_name)
  if not logits:
    return uniform, uniform
  t = clip_value(step, bw_start, bw_full)
  return tuple(combined_weights(logits[s], norm, t, axis_name, step < bw_start)
               for s in ("x", "y"))


@dataclasses.dataclass(frozen=True)
class BatchWeight:
  """Batch weight as a component: weight networks W, per-sample loss weights ω, W's loss.

  A method builds one with `BatchWeight.build(...)`, keeps its networks' parameters
  under the state's 'W' part (`init`), asks for the loss weights of a batch
  (`weights`), writes its adversarial terms as ω-weighted means (ω = 1/m when `mode`
  is 'none', so there is one code path), and adds `squared_gap(...)` of its critic gaps
  to the loss of the phase that trains W, with `optimizer(...)` for the 'W' part.

  mode: 'two_sided' (Algorithm 1: both domains weighted, `scheme` and `norm` apply),
    'one_sided' (Algorithm 2: X alone, softmax of W(x)), 'none' (uniform weights).
  networks: weight networks by name: {'W_x', 'W_y'} (composite), {'W'} (single,
    concat, one-sided) or {} (none).
  """
  mode: str
  scheme: str = "composite"
  norm: str = "softmax"
  bw_start: int = 0
  bw_full: int = 200
  networks: dict = dataclasses.field(default_factory=dict)
  phase: str = "generator"

  @classmethod
  def build(cls, mode: str, weight_net: Callable[[], Any], *, scheme: str = "composite",
            norm: str = "softmax", bw_start: int = 0, bw_full: int = 200,
            phase: str = "generator") -> "BatchWeight":
    """`weight_net()` makes one weight network (a flax module giving a logit per sample);
    `phase`: the step whose update also trains W ('generator', Algorithm 1, or
    'discriminator', the authors' code for JD)."""
    if mode not in MODES:
      raise ValueError(f"unknown batch weight mode {mode!r}; expected one of {MODES}")
    if phase not in PHASES:
      raise ValueError(f"unknown weight phase {phase!r}; expected one of {PHASES}")
    if mode == "none":
      names = ()
    elif mode == "one_sided" or scheme in ("single", "concat"):
      names = ("W",)
    else:
      names = ("W_x", "W_y")
    return cls(mode, scheme, norm, bw_start, bw_full, {n: weight_net() for n in names},
               phase)

  @property
  def active(self) -> bool:
    return self.mode != "none"

  def parts(self, phase: str) -> tuple[str, ...]:
    """The state parts batch weight adds to `phase`'s update: ('W',) in the phase that
    trains the weight networks (with batch weight on), else ()."""
    return ("W",) if self.active and phase == self.phase else ()

  @property
  def weighted_sides(self) -> tuple[str, ...]:
    """The domains whose samples get non-uniform weights: () without batch weight, ('x',)
    one-sided (Algorithm 2), ('x', 'y') two-sided (Algorithm 1)."""
    return {"none": (), "one_sided": ("x",)}.get(self.mode, ("x", "y"))

  def _inputs(self, name, x, y):
    if name == "W_y":
      return (y,)
    if name == "W" and self.scheme == "concat" and self.mode == "two_sided":
      return (x, y)
    return (x,)

  def init(self, keys, x, y) -> tuple[dict, dict]:
    """(params, spectral) of the weight networks by name, one key of `keys` each (in
    `networks` order); `x`, `y` are example batches of the two domains."""
    from jdbw import nets
    params, spectral = {}, {}
    for name, net in self.networks.items():
      params[name], spectral[name] = nets.split_variables(
          nets.init(net, next(keys), *self._inputs(name, x, y)))
    return params, spectral

  def optimizer(self, optim_config, w_lr: float = 0.0):
    """Adam of the optimiser section `optim_config`, at `w_lr` (0: its own lr)."""
    from jdbw import optim
    return optim.adam_optimizer(optim_config, lr=w_lr or optim_config.lr)

  def clip_t(self, step):
    return clip_value(step, self.bw_start, self.bw_full)

  def logits(self, params: dict, x, fx, fy, y) -> dict:
    """Per-sample weight logits {'x': [a...], 'y': [a...]} (Appendix B.1); {} with mode
    'none'. `params` is the state's 'W' part; `fx` = G_xy(x), `fy` = G_yx(y) (None
    one-sided). Per sample, so any batching of a sample gives the same logits."""
    if not self.active:
      return {}
    from jdbw import nets
    W = lambda name, *imgs: nets.apply(self.networks[name], {"params": params[name]}, *imgs)
    if self.mode == "one_sided":
      return {"x": [W("W", x)]}
    a_x, a_y = weight_logits(self.scheme, W, x, fx, fy, y)
    return {"x": a_x, "y": a_y}

  def normalise(self, logits: dict, n: int, step, axis_name=None):
    """(ω_x, ω_y): loss weights of both sides, each summing to 1 over the (global) batch
    (or a whole evaluation sample with `axis_name=None`, n = its size). Uniform before
    bw_start and for sides without logits."""
    uniform = uniform_weights(n, axis_name)
    if not logits:
      return uniform, uniform
    if self.mode == "one_sided":
      w = one_sided_weights(logits["x"][0], self.clip_t(step), axis_name)
      return jnp.where(step < self.bw_start, uniform, w), uniform
    return normalise_two_sided(logits, self.norm, n, step, self.bw_start, self.bw_full,
                               axis_name)

  def weights(self, params: dict, x, fx, fy, y, step, axis_name=None):
    """(ω_x, ω_y) of a training batch."""
    return self.normalise(self.logits(params, x, fx, fy, y), x.shape[0], step, axis_name)

  @staticmethod
  def lsgan_term(outputs, target: float, w, axis_name=None):
    """A weighted adversarial term of the marginal translators: Σ_i ω_i mean (D_i −
    target)² over the (global) batch; with uniform ω (batch weight off) the plain mean."""
    return losses.weighted_sum(losses.lsgan_per_sample(outputs, target), w, axis_name)

  @staticmethod
  def squared_gap(*gaps):
    """W's loss: Σ gap², each gap a critic difference whose only gradient is through ω
    (the critic scores held fixed by the caller)."""
    return sum(jnp.square(g) for g in gaps)

  @classmethod
  def joint_w_loss(cls, d_minus, d_plus, w_x, w_y, axis_name=None):
    """Algorithm 1's W loss (L⁻ − L⁺)² with the joint critic's scores held fixed: only
    the weights ω (w_x on the X pairs, w_y on the Y pairs) carry gradient."""
    l_minus, l_plus = losses.critic_terms(sg(d_minus), sg(d_plus), w_x, w_y, axis_name)
    return cls.squared_gap(l_minus - l_plus)

  @classmethod
  def marginal_w_loss(cls, *sides, axis_name=None):
    """W's loss with marginal critics (MUNIT, CycleGAN, DistanceGAN + BW): Σ over the
    `sides` (fake_scores, ω, real_scores) of (Σ_i ω_i D(fake_i) − mean_j D(real_j))²,
    the scores per sample (`losses.score_per_sample`) and held fixed."""
    return cls.squared_gap(*(
        losses.weighted_sum(sg(fake), w, axis_name) - losses.batch_mean(sg(real), axis_name)
        for fake, w, real in sides))
