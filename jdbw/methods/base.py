"""What every method shares: the `Method` interface, the train state, the optimiser and
the one compiled iteration (a generator step, then d critic steps).

The loop (`jdbw.train`), the evaluator, inference, figures and the benchmarks use a
method only through `Method`; `jdbw.methods` registers the implementations by name.
Steps are written once against a named batch axis (`axis_name`, None on one device),
with the data-parallel convention of `jdbw.parallel`: each per-device loss is the
global value and gradients are averaged with `lax.pmean`.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

import dataclasses

import flax
import jax
import jax.numpy as jnp
import optax

from jdbw import batch_weight, nets, optim, parallel
from jdbw.nets import layers


@flax.struct.dataclass
class TrainState:
  """All training state: step, RNG, params, the networks' other variables, optimiser
  states, and what else a method carries from step to step.

  `params`, `spectral` and `opt_state` are keyed by part ('G', 'D', 'W'; 'F' in `params`
  alone for a fixed network fitted before training, DTN's f), each part by
  network name ({'G_xy', 'G_yx'} for JD, {'G_x', 'G_y'} for MUNIT, ...); a part
  without networks is an empty dict, so every method checkpoints the same way.
  `spectral` holds each network's variables that are not trained by gradient (spectral
  norm's power-iteration vectors, batch norm's running statistics): what inference
  needs besides `params`. `extras`: the method's other state (CycleGAN's image pools,
  DistanceGAN's distance statistics); {} for most methods (and in checkpoints written
  before the field existed, which restore unchanged).
  """
  step: jax.Array
  rng: jax.Array
  params: dict
  spectral: dict     # same layout; empty dicts where a net has no such variables
  opt_state: dict
  extras: dict = dataclasses.field(default_factory=dict)


@runtime_checkable
class Method(Protocol):
  """The interface the loop, evaluator, inference, figures and benchmarks call.

  A method is a frozen config plus pure functions of an explicit `TrainState`; labels
  never reach it (batches hold images only).
  """
  name: ClassVar[str]             # registry name (`--model`)
  config: Any                     # frozen dataclass, saved in config.json
  directions: tuple[str, ...]     # translation directions: ('xy', 'yx') or ('xy',)
  batches_per_iteration: int      # batches stacked per iteration (1 + d critic steps)
  unroll_d_steps: bool
  point_domains: bool             # vector (2-D mixture) domains instead of images
  stochastic: bool                # False: translations ignore z (no noise metrics, Figure 4)
  paired: bool                    # True: trains on (x, y) pairs (`--pairing`), e.g. pix2pix
  encodes_style: bool             # True: `encode_noise` reads the noise off a target image
  prepare_batches: int            # > 0: batches per domain for `prepare` (a data-dependent start)
  pretrains: bool                 # True: `pretrain` fits the method's own fixed network first
  weighted_sides: tuple[str, ...] # domains with non-uniform batch weights: (), ('x',), ('x', 'y')
  critic_names: dict | None       # Figure 3's names of the per-sample critic scores d_x / d_y
                                  # (None: the default names); `BaseMethod` has every default

  def init_state(self, rng) -> TrainState: ...

  def example_shape(self, side: str) -> tuple: ...

  def generator_step(self, state, batch, rng, axis_name=None): ...

  def discriminator_step(self, state, batch, rng, axis_name=None): ...

  def iteration(self, state, batch, axis_name=None): ...

  def translate(self, params, spectral, images, z, direction: str): ...

  def weight_logits(self, params, x, fx, fy, y) -> dict: ...

  def normalise_weights(self, logits: dict, n: int, step, axis_name=None): ...

  def prepare(self, state, batches) -> TrainState:
    """The data-dependent start, once on a fresh run (`prepare_batches` > 0)."""
    ...

  def pretrain(self, state, specs: dict, data_dir) -> TrainState:
    """The method's own stage before training, once on a fresh run (DTN's f, fitted on
    the source domain X's training split; BalaGAN's modalities); `specs` holds the
    {'x', 'y'} `DomainSpec`s. What it fits goes into the state's 'F' part, which no
    optimiser trains, so a resumed run restores it; only where `pretrains`."""
    ...

  def modalities(self, params, images):
    """Each X image's modality found without labels (BalaGAN's clusters), for the
    evaluator's purity/NMI and figure; None for a method without modalities."""
    ...

  def encode_noise(self, params, spectral, images, direction: str):
    """The noise z in (−1, 1)^d whose translation in `direction` takes the style (code) of
    the target-domain `images` (MUNIT's style encoder, BiCycleGAN's E); only where
    `encodes_style`."""
    ...

  def check_domains(self, domains: dict) -> None:
    """Raises ConfigError (naming the flag) when the loaded {'x', 'y'} domains do not
    fit the method (channels, point size)."""
    ...


class BaseMethod:
  """Defaults of the `Method` members most methods share: stochastic, unpaired, no
  data-dependent start, image domains checked against the config's channels, weights
  from `self.bw`."""

  stochastic = True
  paired = False
  encodes_style = False
  prepare_batches = 0
  pretrains = False
  point_domains = False
  critic_names = None

  @property
  def weighted_sides(self) -> tuple[str, ...]:
    return self.bw.weighted_sides

  def prepare(self, state, batches):
    return state

  def pretrain(self, state, specs, data_dir):
    return state

  def modalities(self, params, images):
    return None

  def encode_noise(self, params, spectral, images, direction: str):
    raise NotImplementedError(f"{self.name} reads no style off an image")

  # A method is its frozen config: everything else it holds (networks, batch weight) is
  # built from that config alone. Two methods of one type and config are therefore equal,
  # so that `jdbw.train.compile_iteration` and `compiled_init`, kept per method, are reused
  # by a method rebuilt from the same config (a resume in one process, a test's rerun).
  def __eq__(self, other):
    return type(other) is type(self) and other.config == self.config

  def __hash__(self):
    return hash((type(self), self.config))

  def check_domains(self, domains: dict) -> None:
    from jdbw.errors import ConfigError
    for name, d in domains.items():
      if d.is_points:
        raise ConfigError(f"--source_{name}: {d.spec.source!r} is a point source; it needs"
                          " --model=jd --networks=mlp")
      want = getattr(self.config, f"channels_{name}")
      if d.spec.channels != want:
        raise ConfigError(f"--channels_{name}: domain has {d.spec.channels} channels but"
                          f" the model expects {want}")


class MarginalTranslator(BaseMethod):
  """Members shared by the translators with one critic per domain and composite batch
  weight (MUNIT, CycleGAN, DistanceGAN): `config` has resolution, channels_x/y and
  d_steps; `self.bw` is their `jdbw.batch_weight.BatchWeight`."""

  def __init__(self, config):
    """The validated `config`; `kw`, how the networks compute (kernels, dtype); `bw`,
    batch weight with the config's mode and composite `WeightNet`s; `tx`, Adam for the
    'G', 'D' and 'W' parts."""
    self.config = c = config.validate()
    self.kw = kw = dict(impl=c.conv_impl, dtype=layers.compute_dtype(c.compute_dtype))
    self.bw = batch_weight.BatchWeight.build(
        c.batch_weight, lambda: nets.WeightNet(features=c.w_features, **kw),
        scheme="composite", norm=c.weight_norm, bw_start=c.bw_start, bw_full=c.bw_full)
    self.tx = {k: optim.adam_optimizer(c) for k in ("G", "D")}
    self.tx["W"] = self.bw.optimizer(c, c.w_lr)

  @property
  def batches_per_iteration(self) -> int:
    return 1 + self.config.d_steps

  def example_shape(self, side: str) -> tuple:
    c = self.config
    return (c.resolution, c.resolution, getattr(c, f"channels_{side}"))

  def weight_logits(self, params, x, fx, fy, y) -> dict:
    """Composite weight logits (as JD-BW's), {} without batch weight."""
    return self.bw.logits(params["W"], x, fx, fy, y)

  def normalise_weights(self, logits: dict, n: int, step, axis_name=None):
    return self.bw.normalise(logits, n, step, axis_name)


def empty_parts() -> dict:
  return {"G": {}, "D": {}, "W": {}}


def apply_grads(tx: dict, state: TrainState, grads, parts, axis_name):
  """Averages gradients over the device axis and takes one optimiser step for `parts`."""
  grads = parallel.pmean(grads, axis_name)
  params, opt_state = dict(state.params), dict(state.opt_state)
  for k in parts:
    updates, opt_state[k] = tx[k].update(grads[k], state.opt_state[k], state.params[k])
    params[k] = optax.apply_updates(state.params[k], updates)
  return state.replace(params=params, opt_state=opt_state)


def update(tx: dict, state: TrainState, parts: tuple[str, ...], loss_fn: Callable,
           axis_name=None):
  """One phase, the update every step of every method runs: the gradient of
  `loss_fn(params) -> (loss, aux)` over the `parts` of the state's params ('G', 'D',
  'W'; the other parts held fixed), averaged over the device axis, one optax step per
  part, merged back into the state. Returns (state, loss, aux); the caller puts what
  `aux` carries (spectral state, metrics) where it belongs.
  """
  def part_loss(trainable):
    return loss_fn({**state.params, **trainable})

  trainable = {k: state.params[k] for k in parts}
  (loss, aux), grads = jax.value_and_grad(part_loss, has_aux=True)(trainable)
  return apply_grads(tx, state, grads, parts, axis_name), loss, aux


def step_metrics(prefix: str, terms: dict) -> dict:
  """A phase's loss terms as metrics: `prefix/name`, W's loss as 'w/loss'."""
  return {"w/loss" if k == "w_loss" else f"{prefix}/{k}": v for k, v in terms.items()}


def run_iteration(method: Method, state: TrainState, batch, axis_name=None):
  """One generator step then d critic steps, one compiled call (any method).

  `batch` = {'x': [1 + d, B, ...], 'y': [1 + d, B, ...]} images: slice 0 feeds the
  generator step, slices 1..d the critic steps (fresh batches each). RNG: the
  state's key folded with the step, then with the sub-step index.
  """
  key = jax.random.fold_in(state.rng, state.step)
  g_batch = jax.tree.map(lambda a: a[0], batch)
  state, (g_metrics, per_sample) = method.generator_step(
      state, g_batch, jax.random.fold_in(key, 0), axis_name)

  def d_body(state, inputs):
    i, b = inputs
    return method.discriminator_step(state, b, jax.random.fold_in(key, i), axis_name)

  d_steps = method.config.d_steps
  if method.unroll_d_steps:
    # A Python loop, not a scan: even fully unrolled, a scan keeps its steps in a while
    # loop, where XLA:CPU does not rewrite convolutions into the layouts of its fast
    # kernels (BalaGAN's R1 weight gradients took 1.2-1.6 s each there; docs/benchmarks.md).
    for i in range(1, d_steps + 1):
      state, d_metrics = d_body(state, (i, jax.tree.map(lambda a: a[i], batch)))
  else:
    state, d_metrics = jax.lax.scan(
        d_body, state, (jnp.arange(1, d_steps + 1), jax.tree.map(lambda a: a[1:], batch)))
    d_metrics = jax.tree.map(lambda a: a[-1], d_metrics)
  metrics = {**g_metrics, **d_metrics}
  metrics = parallel.pmean(metrics, axis_name)
  return state.replace(step=state.step + 1), metrics, per_sample


def global_index(n_local, axis_name):
  """Global batch index of each local sample (device offset + position)."""
  offset = jax.lax.axis_index(axis_name) * n_local if axis_name else 0
  return offset + jnp.arange(n_local)


def per_sample_keys(key, global_index):
  """One PRNG key per sample: `key` folded with its global batch index."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(global_index)


def per_sample_normal(key, global_index, shape):
  """One N(0, I) draw of `shape` per sample keyed by its global index: identical on any
  device count."""
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), shape))(global_index)


def per_sample_uniform(key, global_index, shape, minval=0.0, maxval=1.0):
  """One draw per sample keyed by its global index: identical on any device count."""
  return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i), shape,
                                               jnp.float32, minval, maxval))(global_index)
