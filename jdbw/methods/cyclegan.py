"""CycleGAN (Zhu et al. 2017) and CycleGAN + batch weight, as pure steps for the shared loop.

Domains X (the reference's A) and Y (B); deterministic generators G_xy (the reference's
G_A) and G_yx (G_B), LSGAN PatchGAN discriminators D_y (D_A, judging G_xy(x)) and D_x.
Generator loss (the reference's `backward_G`):

  L_G = L_adv(D_y, G_xy(x)) + L_adv(D_x, G_yx(y))
        + λ (|G_yx(G_xy(x)) − x|₁ + |G_xy(G_yx(y)) − y|₁)                  cycle, λ = 10
        + λ λ_idt (|G_xy(y) − y|₁ + |G_yx(x) − x|₁)                         identity, λ_idt = 0.5

and each discriminator minimises ½ [(D(real) − 1)² + D(fake)²], its fakes drawn through a
50-image history (`jdbw.image_pool`; Shrivastava et al. 2017). Adam 2e-4, β1 0.5; the
learning rate held, then decayed linearly to 0 (`lr_hold_steps`, `lr_linear_decay`).

Batch weight (`batch_weight='two_sided'`), as MUNIT + BW (`jdbw.methods.munit`): the
composite weights ω_x of the sources x weight the fake side of D_y's loss and of G's
adversarial term on G_xy(x); ω_y those of G_yx(y). The cycle and identity terms stay
uniform means (`bw_reconstruction=True` weights the cycle terms by the same ω): they
ask every source image to survive its round trip, whatever its mode's mass, which is
what a one-to-one mapper should keep. W minimises Σ (weighted mean fake score − mean
real score)², the critic scores held fixed. Through the history pool each image keeps
the weight it had when it was made (stored beside it), and the fake side of D's loss
is the mean of the shown images weighted by those weights, renormalised.

Where this differs from the reference's loop (one compiled iteration of the shared
harness): the discriminators train on the next batch of the stream, translated by the
just-updated generators, rather than on the generator step's own translations; and the
pool is shared by all devices: the global batch's fakes enter it in global order and
every device keeps the same pool, so any device count trains the same function.
Deterministic: the harness's noise z is accepted and ignored.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.lax import stop_gradient as sg

from jdbw import image_pool, losses, nets, parallel
from jdbw import config as config_lib
from jdbw.methods import base

BATCH_WEIGHTS = ("none", "two_sided")


@dataclasses.dataclass(frozen=True)
class CycleGANConfig(config_lib.MarginalTranslatorConfig):
  """CycleGAN's settings (the reference's defaults, networks sized for 32x32 digits).

  At 32x32: a ResNet generator of width 32 with 3 blocks and a 2-layer PatchGAN of
  width 32 (6x6 patch scores), chosen for CPU cost. The reference's 256x256 networks
  (ngf 64, 9 blocks; ndf 64, 3 layers) are `--ngf=64 --n_blocks=9 --ndf=64
  --dis_layers=3` (6 blocks is its 128x128 choice).
  """
  lr: float = 2e-4
  ngf: int = config_lib.setting(
      32, "Generator base width (cyclegan: ResNet, pix2pix: U-Net; references: 64).")
  n_blocks: int = config_lib.setting(3, "CycleGAN residual blocks (reference: 9 at 256, 6 at 128).")
  ndf: int = config_lib.setting(32, "PatchGAN width (cyclegan, pix2pix; references: 64).")
  dis_layers: int = config_lib.setting(
      2,
      "Discriminator down-sampling layers (the PatchGAN of cyclegan and pix2pix: reference"
      " 3; munit's).")
  # λ (the reference's lambda_A = lambda_B)
  cycle_weight: float = config_lib.setting(
      10.0,
      "Cycle-consistency weight λ (cyclegan: L1 each way; distancegan: the authors' "
      "squared error).")
  # λ_idt, times λ; 0 = no identity loss
  identity_weight: float = config_lib.setting(0.5, "Identity loss weight, times λ (0 = off).")
  # 0 = no history pool
  pool_size: int = config_lib.setting(50, "Discriminator history pool (0 = off).")
  # the reference halves each discriminator's loss
  d_loss_scale: float = config_lib.setting(0.5, "Factor of each discriminator's loss.")
  # batch weight also on the cycle terms
  bw_reconstruction: bool = config_lib.setting(
      False,
      "Batch weight also on the cycle (and distance) terms.")
  # generator steps at --lr before the linear decay
  lr_hold_steps: int = config_lib.setting(
      0,
      "The reference's schedule (cyclegan, pix2pix): steps at --lr before the linear decay.")
  # steps of linear decay to 0 after them; 0 = constant
  lr_linear_decay: int = config_lib.setting(
      0,
      "Steps of linear decay to 0 after --lr_hold_steps (0 = constant).")

  BATCH_WEIGHTS = BATCH_WEIGHTS

  def check(self):
    from jdbw.errors import ConfigError
    config_lib.positive(self, "ngf", "ndf", "dis_layers")
    if self.n_blocks < 0 or self.pool_size < 0 or self.lr_hold_steps < 0 \
        or self.lr_linear_decay < 0:
      raise ConfigError("--n_blocks, --pool_size, --lr_hold_steps and --lr_linear_decay:"
                        " expected >= 0")
    if self.lr_linear_decay and self.lr_decay_every:
      raise ConfigError("--lr_linear_decay and --lr_decay_every: choose one learning-rate"
                        " decay")
    if self.cycle_weight < 0 or self.identity_weight < 0 or self.d_loss_scale <= 0:
      raise ConfigError("--cycle_weight and --identity_weight: expected >= 0;"
                        " --d_loss_scale: > 0")
    if self.identity_weight and self.cycle_weight and self.channels_x != self.channels_y:
      raise ConfigError(f"--identity_weight: the identity loss feeds Y images to G_xy; the"
                        f" domains have {self.channels_x} and {self.channels_y} channels"
                        " (set --identity_weight=0)")
    self._check_networks()

  def _check_networks(self):
    from jdbw.errors import ConfigError
    if self.resolution % 4 or self.resolution < 2 ** (self.dis_layers + 2):
      raise ConfigError(f"--resolution: {self.resolution} must divide by 4 and be at least"
                        f" 2^(dis_layers + 2) = {2 ** (self.dis_layers + 2)}")


def l1_per_sample(a, b):
  return jnp.mean(jnp.abs(a - b).reshape(a.shape[0], -1).astype(jnp.float32), axis=-1)


def l2_per_sample(a, b):
  return jnp.mean(jnp.square(a - b).reshape(a.shape[0], -1).astype(jnp.float32), axis=-1)


class Runner:
  """Applies a method's networks with given params, threading their non-trained
  variables (batch-norm statistics) through successive training-mode calls, as
  PyTorch's modules update theirs on every forward."""

  def __init__(self, method, params, spectral, axis_name, train: bool):
    self.method, self.params, self.axis_name, self.train = method, params, axis_name, train
    self.spectral = {k: dict(v) for k, v in spectral.items()}

  def __call__(self, part: str, name: str, *inputs):
    module = self.method.module(part, name, self.axis_name)
    variables = {"params": self.params[part][name]}
    stats = self.spectral.get(part, {}).get(name)
    if not stats:
      return module.apply(variables, *inputs)
    variables["batch_stats"] = stats
    if not self.train:
      return module.apply(variables, *inputs, train=False)
    out, new = module.apply(variables, *inputs, train=True, mutable=["batch_stats"])
    self.spectral[part][name] = new["batch_stats"]
    return out


def pool_init(size: int, shape) -> dict:
  """A history pool and the relative weights of its images, as a checkpointable dict."""
  p = image_pool.init(size, shape)
  return {"images": p.images, "count": p.count, "weights": jnp.ones((size,), jnp.float32)}


def pool_query(pool: dict, images, rel_weights, rng, axis_name):
  """(new pool, shown images, their relative weights) for this device's `images`.

  The global batch (gathered in device order) enters the one shared pool, so every
  device updates the same pool with the same draws and takes its own slice of what
  is shown: the result does not depend on the device count.
  """
  n = images.shape[0]
  g_images = parallel.all_gather(images, axis_name)
  g_weights = parallel.all_gather(rel_weights, axis_name)
  size = pool["images"].shape[0]
  coins, slots = image_pool.draws(rng, g_images.shape[0], size)
  state = image_pool.PoolState(pool["images"], pool["count"])
  new, shown = image_pool.query_with(state, g_images, coins, slots)
  w_state = image_pool.PoolState(pool["weights"][:, None], pool["count"])
  new_w, shown_w = image_pool.query_with(w_state, g_weights[:, None], coins, slots)
  start = base.global_index(n, axis_name)[0]
  local = lambda a: jax.lax.dynamic_slice_in_dim(a, start, n)
  pool = {"images": new.images, "count": new.count, "weights": new_w.images[:, 0]}
  return pool, local(shown), local(shown_w[:, 0])


class CycleGAN(base.MarginalTranslator):
  """CycleGAN; `batch_weight='two_sided'` is CycleGAN + batch weight."""

  name = "cyclegan"
  directions = ("xy", "yx")
  unroll_d_steps = True
  stochastic = False     # z is ignored: the evaluator's noise metrics do not apply

  # --- networks (a subclass changes these) ---

  def module(self, part: str, name: str, axis_name=None):
    """The flax module of network `name` of `part` (`axis_name`: for batch norm)."""
    c = self.config
    if part == "G":
      out = c.channels_y if name == "G_xy" else c.channels_x
      return nets.cyclegan.ResnetGenerator(out, c.ngf, c.n_blocks, **self.kw)
    return nets.cyclegan.PatchDiscriminator(c.ndf, c.dis_layers, **self.kw)

  def network_names(self) -> dict:
    return {"G": ("G_xy", "G_yx"), "D": ("D_x", "D_y")}

  def _input(self, name: str, x, y):
    """The example input of network `name`: G_xy and D_x take X images."""
    return x if name in ("G_xy", "D_x") else y

  def init_state(self, rng) -> base.TrainState:
    x = jnp.zeros((2, *self.example_shape("x")))
    y = jnp.zeros((2, *self.example_shape("y")))
    # The state's own key first: with or without W networks the run draws the same
    # pool choices (batch weight off = the plain method, draw for draw).
    state_key, net_key = jax.random.split(rng)
    keys = iter(jax.random.split(net_key, 8))
    params, spectral = base.empty_parts(), base.empty_parts()
    for part, names in self.network_names().items():
      for name in names:
        v = self.module(part, name).init(next(keys), self._input(name, x, y))
        params[part][name] = v["params"]
        if "batch_stats" in v:
          spectral[part][name] = v["batch_stats"]
    params["W"], _ = self.bw.init(keys, x, y)
    opt_state = {k: self.tx[k].init(params[k]) for k in ("G", "D", "W")}
    return base.TrainState(step=jnp.zeros((), jnp.int32), rng=state_key, params=params,
                           spectral=spectral, opt_state=opt_state,
                           extras=self.init_extras())

  def init_extras(self) -> dict:
    c = self.config
    if not c.pool_size:
      return {}
    return {"pool": {side: pool_init(c.pool_size, self.example_shape(side))
                     for side in self.fake_sides()}}

  def fake_sides(self) -> tuple:
    """The domains whose discriminator scores translations: ('x', 'y')."""
    return ("x", "y")

  def translate(self, params, spectral, images, z, direction: str):
    del z   # deterministic
    name = {"xy": "G_xy", "yx": "G_yx"}[direction]
    return Runner(self, params, spectral, None, train=False)("G", name, images)

  # --- loss pieces ---

  def reconstruction_terms(self, run, x, y, fy, fx, w_x, w_y, state, axis_name) -> dict:
    """Cycle and identity terms (weighted: λ already applied)."""
    c = self.config
    per = l1_per_sample
    mean = lambda v, w: (losses.weighted_sum(v, sg(w), axis_name)
                         if c.bw_reconstruction else losses.batch_mean(v, axis_name))
    terms = {}
    if c.cycle_weight:
      terms["cycle"] = c.cycle_weight * (mean(per(run("G", "G_yx", fy), x), w_x)
                                         + mean(per(run("G", "G_xy", fx), y), w_y))
    if c.identity_weight and c.cycle_weight:
      terms["identity"] = c.cycle_weight * c.identity_weight * (
          losses.batch_mean(per(run("G", "G_xy", y), y), axis_name)
          + losses.batch_mean(per(run("G", "G_yx", x), x), axis_name))
    return terms

  # --- steps: (state, batch, rng) -> (state, metrics) ---

  # The directions' translations: direction 'xy' maps batch['x'] by G_xy to fakes that
  # D_y scores, weighted by ω_x; 'yx' the other way. One-sided (DistanceGAN) has 'xy' alone.

  def generator_step(self, state, batch, rng, axis_name=None):
    """The reference's backward_G, adversarial terms weighted by ω; W on the squared gap."""
    del rng   # deterministic generators
    x, y = batch["x"], batch["y"]
    dirs = self.directions
    parts = ("G",) + self.bw.parts("generator")
    lsgan = self.bw.lsgan_term

    def loss_fn(params):
      run = Runner(self, params, state.spectral, axis_name, train=True)
      fake = {d: run("G", f"G_{d}", batch[d[0]]) for d in dirs}
      fy, fx = fake["xy"], fake.get("yx")
      w = dict(zip(("xy", "yx"), self.bw.weights(
          params["W"], x, sg(fy), None if fx is None else sg(fx), y, state.step, axis_name)))
      d_fake = {d: run("D", f"D_{d[1]}", fake[d]) for d in dirs}
      terms = {"adv": sum(lsgan(d_fake[d], 1.0, sg(w[d]), axis_name) for d in dirs)}
      terms.update(self.reconstruction_terms(run, x, y, fy, fx, w["xy"], w["yx"], state,
                                             axis_name))
      loss = sum(terms.values())
      if "W" in parts:
        score = losses.score_per_sample
        terms["w_loss"] = self.bw.marginal_w_loss(
            *[(score(d_fake[d]), w[d], score(run("D", f"D_{d[1]}", batch[d[1]])))
              for d in dirs[::-1]], axis_name=axis_name)
        loss = loss + terms["w_loss"]
      return loss, (terms, w, run.spectral)

    state, _, (terms, w, spectral) = base.update(self.tx, state, parts, loss_fn, axis_name)
    m = parallel.global_size(x.shape[0], axis_name)
    per_sample = {f"w_{d[0]}": w[d] * m for d in dirs}
    return state.replace(spectral=spectral), (base.step_metrics("g", terms), per_sample)

  def discriminator_step(self, state, batch, rng, axis_name=None):
    """The reference's backward_D_A/B (LSGAN, ×½) on the pool's images, fakes weighted."""
    c = self.config
    x, y = batch["x"], batch["y"]
    run = Runner(self, state.params, state.spectral, axis_name, train=True)
    fake = sg({d: run("G", f"G_{d}", batch[d[0]]) for d in self.directions})
    w_x, w_y = self.bw.weights(state.params["W"], x, fake["xy"], fake.get("yx"), y,
                               state.step, axis_name)
    m = parallel.global_size(x.shape[0], axis_name)
    # By the domain of the fakes: D_y scores G_xy(x), weighted by ω_x.
    fakes = {d[1]: (fake[d], {"x": w_x, "y": w_y}[d[0]]) for d in self.directions}
    extras = dict(state.extras)
    if c.pool_size:
      pools = dict(extras["pool"])
      for i, side in enumerate(self.fake_sides()):
        images, w = fakes[side]
        pools[side], shown, rel = pool_query(pools[side], images, w * m,
                                             jax.random.fold_in(rng, i), axis_name)
        # The shown images' weights, renormalised over the global batch; uniform
        # (exactly) without batch weight.
        w = (rel / parallel.psum(rel.sum(), axis_name) if self.bw.active
             else losses.uniform_weights(x.shape[0], axis_name))
        fakes[side] = (shown, w)
      extras["pool"] = pools

    def loss_fn(params):
      d_run = Runner(self, params, run.spectral, axis_name, train=True)
      total = 0.0
      for side in self.fake_sides():
        shown, w = fakes[side]
        name = f"D_{side}"
        real_term = losses.batch_mean(losses.lsgan_per_sample(d_run("D", name, batch[side]), 1.0),
                                      axis_name)
        fake_term = self.bw.lsgan_term(d_run("D", name, shown), 0.0, w, axis_name)
        total = total + c.d_loss_scale * (real_term + fake_term)
      return total, d_run.spectral

    state, loss, spectral = base.update(self.tx, state, ("D",), loss_fn, axis_name)
    return state.replace(spectral=spectral, extras=extras), {"d/loss": loss}

  def iteration(self, state, batch, axis_name=None):
    return base.run_iteration(self, state, batch, axis_name)
