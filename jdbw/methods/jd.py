"""JD-BW (Algorithm 1), its ablations and Algorithm 2, as pure training steps.

`JD(config)` holds the (static) modules and optimisers; all state lives in the
`base.TrainState` pytree. Batch weight is the shared `jdbw.batch_weight.BatchWeight`
component (`self.bw`). Every step is written once against a named batch axis
(`axis_name`), with the data-parallel convention of `jdbw.parallel`.

Sign convention (Algorithm 1): D maximises L⁻ − L⁺, i.e. scores the pairs
(x, G_xy(x)) high and (G_yx(y), y) low; G minimises L⁻ − L⁺; W minimises (L⁻ − L⁺)².
The loss weights ω are constants in G's and D's updates (only W's update
differentiates through them). Labels never reach these functions: batches hold
images only.
"""

from __future__ import annotations

import dataclasses
import functools
import jax
import jax.numpy as jnp
from jax.lax import stop_gradient as sg
import numpy as np

from jdbw import batch_weight, losses, nets, optim, parallel
from jdbw.errors import ConfigError
from jdbw.nets import layers
from jdbw import config as config_lib
from jdbw.methods import base
from jdbw.methods.base import TrainState, global_index, per_sample_uniform

BATCH_WEIGHTS = batch_weight.MODES
WEIGHT_PHASES = batch_weight.PHASES
RESOLUTIONS = (32, 128)
NETWORKS = ("conv", "mlp")   # conv: the paper's image networks; mlp: 2-D mixture bench


@dataclasses.dataclass(frozen=True)
class JDConfig(config_lib.MethodConfig):
  """Everything that defines the model and its training (saved with the workdir).

  The shared sections (images, optimiser, batch weight, execution) come from
  `jdbw.config`; these are JD's own fields.
  """
  weighting: str = config_lib.setting(
      "composite",
      "Weighting scheme (Appendix B.1).", choices=batch_weight.SCHEMES)
  weight_phase: str = config_lib.setting(
      "generator",
      "Train W in the generator phase (paper) or the critic phase (authors' code).",
      choices=WEIGHT_PHASES)
  gp_type: str = config_lib.setting(
      "points",
      "Gradient penalty at training points (Roth et al.) or interpolates (Gulrajani et "
      "al.).", choices=losses.GP_TYPES)
  gp_weight: float = config_lib.setting(10.0, "Gradient penalty weight.")
  # 32x32 generator only (Table 2's K, s)
  g_kernel: int = config_lib.setting(4, "Generator K (4, or 1 for MNIST-SVHN).")
  g_stride: int = config_lib.setting(2, "Generator s (2, or 1 for MNIST-SVHN).")
  g_features: int = config_lib.setting(64, "Generator width (Table 2: 64).")
  d_features: int = config_lib.setting(32, "Joint critic base width (Table 1: 32).")
  # Vector networks for point domains (`mixture2d`): widths are g/d/w_features.
  networks: str = config_lib.setting(
      "conv",
      "conv = the paper's image networks; mlp = vector networks (residual MLP "
      "generators, MLP critic and weight nets; widths --g/d/w_features) for point "
      "domains (--source_{x,y}=mixture2d...).", choices=NETWORKS)
  # hidden layers of each MLP (networks='mlp')
  mlp_layers: int = config_lib.setting(3, "Hidden layers of each MLP (--networks=mlp).")
  point_dim: int = 2              # size of a point (networks='mlp'; set from the data)
  # Oracle generators (networks='mlp'): G_xy(x) = M x + c fixed, G_yx its inverse; only
  # D and W train. ((M row-major), (c)) from `jdbw.data.mixture.true_map`; () = learned.
  oracle_map: tuple = ()

  def __post_init__(self):
    # JSON (config.json) gives lists; keep the config hashable and comparable.
    tup = lambda v: tuple(tup(a) for a in v) if isinstance(v, (list, tuple)) else float(v)
    object.__setattr__(self, "oracle_map", tup(self.oracle_map))

  def check(self):
    from jdbw.errors import ConfigError
    for field, allowed in (("weighting", batch_weight.SCHEMES), ("weight_phase", WEIGHT_PHASES),
                           ("gp_type", losses.GP_TYPES), ("networks", NETWORKS)):
      config_lib.one_of(self, field, allowed)
    config_lib.positive(self, "g_features", "d_features", "mlp_layers", "point_dim")
    if self.resolution not in RESOLUTIONS:
      raise ConfigError(f"--resolution: got {self.resolution}; expected one of {RESOLUTIONS}"
                        " (Tables 1-2 at 32, the MUNIT-style networks at 128)")
    if self.resolution == 32 and (self.g_kernel, self.g_stride) not in ((4, 2), (1, 1)):
      raise ConfigError("--g_kernel/--g_stride: expected 4/2 (MNIST-SRMNIST) or 1/1 (MNIST-SVHN)")
    if self.resolution == 128 and (self.g_kernel, self.g_stride) != (4, 2):
      raise ConfigError("--g_kernel/--g_stride: Table 2's; the 128x128 generator is MUNIT's"
                        " (nets.GeneratorHiRes), leave them unset")
    if self.networks == "mlp" and self.compute_dtype != "float32":
      raise ConfigError("--compute_dtype: the vector networks (--networks=mlp) run in float32")
    if self.oracle_map and self.networks != "mlp":
      raise ConfigError("--oracle_generators: only for point domains (--networks=mlp,"
                        " --source_{x,y}=mixture2d...)")
    if self.oracle_map and (len(self.oracle_map) != 2 or
                            len(self.oracle_map[0]) != self.point_dim ** 2 or
                            len(self.oracle_map[1]) != self.point_dim):
      raise ConfigError(f"oracle_map: expected ((M row-major), (c)) for points of size"
                        f" {self.point_dim}; got {self.oracle_map}")
    if self.gp_weight < 0:
      raise ConfigError(f"--gp_weight: got {self.gp_weight}; expected >= 0")


# §4.4's 128x128 setting (Edges <-> Shoes&Bags, CelebA <-> Portraits): RGB, d_z = 16,
# d = 2 critic steps (batch 6, 300k generator steps).
PAPER_128 = dict(resolution=128, channels_x=3, channels_y=3, noise_dim=16, d_steps=2)


def _join_vars(params, spectral):
  return {"params": params, nets.SPECTRAL: spectral} if spectral else {"params": params}


def oracle_maps(oracle_map) -> dict:
  """{'G_xy': (M, c), 'G_yx': (M⁻¹, −M⁻¹ c)} as tuples, from ((M row-major), (c))."""
  c = np.asarray(oracle_map[1], np.float64)
  m = np.asarray(oracle_map[0], np.float64).reshape(len(c), len(c))
  m_inv = np.linalg.inv(m)
  as_tuples = lambda a, b: (tuple(map(float, a.reshape(-1))), tuple(map(float, b)))
  return {"G_xy": as_tuples(m, c), "G_yx": as_tuples(m_inv, -m_inv @ c)}


class JD(base.BaseMethod):
  """Joint discriminator model family: two_sided (JD-BW), none (JD alone), one_sided."""

  name = "jd"

  def __init__(self, config: JDConfig):
    self.config = c = config.validate()
    kw = dict(impl=c.conv_impl, dtype=layers.compute_dtype(c.compute_dtype))
    if c.networks == "mlp":
      kw = dict(num_layers=c.mlp_layers)
      gen = lambda out_channels: nets.MLPGenerator(features=c.g_features, **kw)
      joint = marginal = nets.MLPJointDiscriminator
      weight = nets.MLPWeightNet
    elif c.resolution == 32:
      gen = functools.partial(nets.Generator, kernel=c.g_kernel, stride=c.g_stride,
                              features=c.g_features, **kw)
      joint, marginal, weight = (nets.JointDiscriminator, nets.MarginalDiscriminator,
                                 nets.WeightNet)
    else:
      gen = functools.partial(nets.GeneratorHiRes, features=c.g_features, **kw)
      joint = nets.JointDiscriminator128
      marginal, weight = nets.MarginalDiscriminator128, nets.WeightNet128
    self.G = {"G_xy": gen(out_channels=c.channels_y)}
    if c.batch_weight != "one_sided":
      self.G["G_yx"] = gen(out_channels=c.channels_x)
      self.D = joint(features=c.d_features, **kw)
    else:
      self.D = marginal(features=c.d_features, **kw)
    if c.oracle_map:  # Fixed true map and its inverse: only D and W train.
      self.G = {k: nets.AffineMap(*v) for k, v in oracle_maps(c.oracle_map).items()
                if k in self.G}
    self.bw = batch_weight.BatchWeight.build(
        c.batch_weight, functools.partial(weight, features=c.w_features, **kw),
        scheme=c.weighting, norm=c.weight_norm, bw_start=c.bw_start, bw_full=c.bw_full,
        phase=c.weight_phase)
    self.tx = {k: optim.adam_optimizer(c) for k in ("G", "D")}
    self.tx["W"] = self.bw.optimizer(c, c.w_lr)

  unroll_d_steps = True

  @property
  def batches_per_iteration(self) -> int:
    return 1 + self.config.d_steps

  @property
  def point_domains(self) -> bool:
    return self.config.networks == "mlp"

  @property
  def critic_names(self):
    """One-sided batch weight: Figure 3's critic rows are the marginal critic's scores of
    G_xy(x) and of the real y."""
    return {"x": "D(G_xy(x))", "y": "D(y)"} if self.config.batch_weight == "one_sided" else None

  def check_domains(self, domains: dict) -> None:
    """Image domains as `BaseMethod`; with --networks=mlp, point domains of `point_dim`."""
    if not self.point_domains:
      return super().check_domains(domains)
    for name, d in domains.items():
      if not d.is_points:
        raise ConfigError(f"--networks=mlp: takes point domains (--source_{name}="
                          f"mixture2d...), not {d.spec.source!r}")
      if self.config.point_dim != d.data.mixture_dim:
        raise ConfigError(f"--source_{name}: points of size {d.data.mixture_dim}; the model"
                          f" takes {self.config.point_dim}")

  # --- construction ---

  def example_shape(self, side: str) -> tuple:
    """Shape of one example of domain `side` ('x' or 'y') as the networks take it."""
    c = self.config
    if c.networks == "mlp":
      return (c.point_dim,)
    return (c.resolution, c.resolution, getattr(c, f"channels_{side}"))

  def init_state(self, rng) -> TrainState:
    c = self.config
    x = jnp.zeros((1,) + self.example_shape("x"))
    y = jnp.zeros((1,) + self.example_shape("y"))
    z = jnp.zeros((1, c.noise_dim))
    keys = iter(jax.random.split(rng, 8))
    params, spectral = {"G": {}, "D": {}, "W": {}}, {"G": {}, "D": {}, "W": {}}
    for name, g in self.G.items():
      params["G"][name], spectral["G"][name] = nets.split_variables(
          nets.init(g, next(keys), x if name == "G_xy" else y, z))
    d_inputs = (y,) if self.config.batch_weight == "one_sided" else (x, y)
    params["D"]["D"], spectral["D"]["D"] = nets.split_variables(
        nets.init(self.D, next(keys), *d_inputs))
    params["W"], spectral["W"] = self.bw.init(keys, x, y)
    opt_state = {k: self.tx[k].init(params[k]) for k in ("G", "D", "W")}
    return TrainState(step=jnp.zeros((), jnp.int32), rng=next(keys), params=params,
                      spectral=spectral, opt_state=opt_state)

  # --- forward pieces ---

  @staticmethod
  def _run(module, params, spectral, *inputs, update_stats=False):
    """(output, spectral state after the call): updated only with update_stats."""
    variables = _join_vars(params, spectral)
    if not update_stats:
      return nets.apply(module, variables, *inputs), spectral
    out, variables = nets.apply(module, variables, *inputs, update_stats=True)
    return out, variables.get(nets.SPECTRAL, {})

  def generate(self, params, spectral, name, images, z, update_stats=False):
    return self._run(self.G[name], params["G"][name], spectral["G"][name], images, z,
                     update_stats=update_stats)

  def critic(self, params, spectral, *inputs, update_stats=False):
    return self._run(self.D, params["D"]["D"], spectral["D"]["D"], *inputs,
                     update_stats=update_stats)

  @property
  def directions(self) -> tuple[str, ...]:
    """Translation directions this model has ('xy', and 'yx' unless one-sided)."""
    return tuple(d for d in ("xy", "yx") if f"G_{d}" in self.G)

  def weight_logits(self, params, x, fx, fy, y) -> dict:
    """Per-sample weight logits {'x': [a...], 'y': [a...]} (Appendix B.1); {} unweighted.

    `fx` = G_xy(x), `fy` = G_yx(y) (None one-sided); normalise with `normalise_weights`.
    """
    return self.bw.logits(params["W"], x, fx, fy, y)

  def normalise_weights(self, logits: dict, n: int, step, axis_name=None):
    """(ω_x, ω_y), each summing to 1 over the (global) batch (`BatchWeight.normalise`)."""
    return self.bw.normalise(logits, n, step, axis_name)

  def _sides(self, params, spectral, x, y, zx, zy, *, train_g, train_d, input_grads=False):
    """Generated images, critic scores of both sides and the new spectral state.

    `input_grads`: also ‖∇D‖² per sample at both sides' points, from the same forward
    passes (the gradient penalty at the training points); else None.
    """
    fx, sn_xy = self.generate(params, spectral, "G_xy", x, zx, update_stats=train_g)
    new_spectral = {**spectral, "G": {**spectral["G"], "G_xy": sn_xy}}
    if self.config.batch_weight == "one_sided":
      fy = None
      if not train_g:
        fx = sg(fx)
      minus, plus = (fx,), (y,)
    else:
      fy, sn_yx = self.generate(params, spectral, "G_yx", y, zy, update_stats=train_g)
      new_spectral["G"]["G_yx"] = sn_yx
      if not train_g:
        fx, fy = sg(fx), sg(fy)
      minus, plus = (x, fx), (fy, y)
    # Only the first critic call advances the power iteration; the second uses its state.
    critic = lambda sn, update: lambda *inp: self.critic(params, sn, *inp, update_stats=update)
    if input_grads:
      d_minus, sq_minus, sn_d = losses.score_and_sq_grad_norm(
          critic(spectral, train_d), *minus, has_aux=True)
      d_plus, sq_plus, _ = losses.score_and_sq_grad_norm(
          critic({**spectral, "D": {"D": sn_d}}, False), *plus, has_aux=True)
      sq = (sq_minus, sq_plus)
    else:
      d_minus, sn_d = critic(spectral, train_d)(*minus)
      d_plus, _ = critic({**spectral, "D": {"D": sn_d}}, False)(*plus)
      sq = None
    new_spectral["D"] = {"D": sn_d}
    return fx, fy, d_minus, d_plus, new_spectral, sq

  def _noise(self, key, x, axis_name):
    idx = global_index(x.shape[0], axis_name)
    kx, ky = jax.random.split(key)
    d = self.config.noise_dim
    return (per_sample_uniform(kx, idx, (d,), -1.0, 1.0),
            per_sample_uniform(ky, idx, (d,), -1.0, 1.0))

  # --- steps: (state, batch, rng) -> (state, metrics) ---

  def generator_step(self, state: TrainState, batch, rng, axis_name=None):
    """Algorithm 1, generator–weight step: G on ∇(L⁻ − L⁺), W on ∇(L⁻ − L⁺)²."""
    x, y = batch["x"], batch["y"]
    zx, zy = self._noise(rng, x, axis_name)
    parts = ("G",) + self.bw.parts("generator")

    def loss_fn(params):
      fx, fy, d_minus, d_plus, spectral, _ = self._sides(
          params, state.spectral, x, y, zx, zy, train_g=True, train_d=False)
      fy_w = None if fy is None else sg(fy)
      w_x, w_y = self.bw.weights(params["W"], x, sg(fx), fy_w, y, state.step, axis_name)
      l_minus, l_plus = losses.critic_terms(d_minus, d_plus, sg(w_x), sg(w_y), axis_name)
      gap = l_minus - l_plus
      loss = gap
      if "W" in parts:
        loss = loss + self.bw.joint_w_loss(d_minus, d_plus, w_x, w_y, axis_name)
      return loss, (spectral, gap, w_x, w_y, sg(d_minus), sg(d_plus))

    state, _, (spectral, gap, w_x, w_y, d_minus, d_plus) = base.update(
        self.tx, state, parts, loss_fn, axis_name)
    m = parallel.global_size(x.shape[0], axis_name)
    metrics = {"g/gap": gap, "w/loss": jnp.square(gap),
               "w/clip_t": self.bw.clip_t(state.step)}
    # Monitoring only (labels stay on the host): weights x m (1 = uniform) and the
    # critic's scores, whose per-class means show why W moves (its gradient on ω_i is
    # 2·gap·D_i). One-sided: d_y scores the real y.
    per_sample = {"w_x": w_x * m, "w_y": w_y * m, "d_x": d_minus, "d_y": d_plus}
    return state.replace(spectral=spectral), (metrics, per_sample)

  def discriminator_step(self, state: TrainState, batch, rng, axis_name=None):
    """Algorithm 1, critic step: D on −∇(L⁻ − L⁺) + λ·GP (W too in the code's variant)."""
    c = self.config
    x, y = batch["x"], batch["y"]
    k_noise, k_gp = jax.random.split(rng)
    zx, zy = self._noise(k_noise, x, axis_name)
    parts = ("D",) + self.bw.parts("discriminator")
    one_sided = c.batch_weight == "one_sided"

    def loss_fn(params):
      fx, fy, d_minus, d_plus, spectral, sq_norms = self._sides(
          params, state.spectral, x, y, zx, zy, train_g=False, train_d=True,
          input_grads=c.gp_type == "points")
      w_x, w_y = self.bw.weights(params["W"], x, fx, fy, y, state.step, axis_name)
      l_minus, l_plus = losses.critic_terms(d_minus, d_plus, sg(w_x), sg(w_y), axis_name)
      gap = l_minus - l_plus
      if c.gp_type == "points":
        gp = losses.penalty_from_sq_norms(sq_norms, axis_name)
      elif c.gp_type == "interpolates":
        d_fn = lambda *inp: self.critic(params, spectral, *inp)[0]
        points = [(fx,), (y,)] if one_sided else [(x, fx), (fy, y)]
        eps = per_sample_uniform(k_gp, global_index(x.shape[0], axis_name), ())
        gp = losses.gradient_penalty_interpolates(d_fn, points[0], points[1], eps, axis_name)
      else:
        gp = jnp.zeros(())
      loss = -gap + c.gp_weight * gp
      if "W" in parts:
        loss = loss + self.bw.joint_w_loss(d_minus, d_plus, w_x, w_y, axis_name)
      return loss, (spectral, gap, gp)

    state, _, (spectral, gap, gp) = base.update(self.tx, state, parts, loss_fn, axis_name)
    return state.replace(spectral=spectral), {"d/gap": gap, "d/gp": gp}

  def iteration(self, state: TrainState, batch, axis_name=None):
    """One generator step then d critic steps, one compiled call (`base.run_iteration`)."""
    return base.run_iteration(self, state, batch, axis_name)

  # --- inference ---

  def translate(self, params, spectral, images, z, direction: str):
    name = {"xy": "G_xy", "yx": "G_yx"}[direction]
    if name not in self.G:
      raise ValueError(f"this model ({self.config.batch_weight}) has no {name}")
    return self.generate(params, spectral, name, images, z)[0]
