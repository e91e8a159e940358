"""XGAN (Royer et al. 2018) and XGAN + batch weight, as pure steps for the shared loop.

Two domains X (the paper's D1) and Y (D2), each with an encoder and a decoder. The
encoders share their last layers and the decoders their first (`jdbw.nets.dtn`:
domain-specific `EncoderIn`, shared `EncoderOut`; shared `DecoderIn`, domain-specific
`DecoderOut`), so both domains meet in one embedding: e_x(x), e_y(y). Translation is
G_xy = d_y ∘ e_x and G_yx = d_x ∘ e_y. The generator side (encoders and decoders)
minimises

  ω_rec  (‖d_x(e_x(x)) − x‖² + ‖d_y(e_y(y)) − y‖²)                      reconstruction
  ω_dann (BCE(c(e_x(x)), Y) + BCE(c(e_y(y)), X))                  domain-adversarial
  ω_sem  (|e_x(x) − e_y(G_xy(x))|₁ + |e_y(y) − e_x(G_yx(y))|₁)  semantic consistency
  ω_gan  (BCE(D_y(G_xy(x)), real) + BCE(D_x(G_yx(y)), real))                    GAN
  ω_teach ‖f(x) − e_x(x)‖²                        teacher (optional; DTN's fixed f)

and the critics (c, D_x, D_y) their binary cross-entropies: c tells X embeddings (label
1) from Y embeddings (0), D_y real Y from G_xy(x), D_x real X from G_yx(y). Squared
errors and L1 are means over coordinates; every term a mean over the global batch.
The embedding adversary is explicit: c is trained in the critic step and the encoders
take the flipped-label loss (the GAN form of the paper's gradient-reversal DANN, the
same fixed point). The paper trains the GAN term on X -> Y (faces -> cartoons) only;
here both translations are judged, so both domains' adversarial terms exist for batch
weight. The paper's loss weights are not in the material we have: the defaults are 1
(teacher 0), docs/paper_map.md. The teacher's f is DTN's (`jdbw.methods.dtn`,
`--dtn_f`), fitted once before training; its size is the embedding's.

Batch weight (`--batch_weight=two_sided`, composite W as CycleGAN + BW): ω_x weights
every adversarial term on X's samples, ω_y on Y's: D_y's fake term and G's GAN term on
G_xy(x) (ω_x), D_x's and G's on G_yx(y) (ω_y), and both sides of the embedding
adversary (c's and the encoders' terms on e_x(x) by ω_x, on e_y(y) by ω_y): unweighted,
c would ask the embeddings of the two domains to carry equal *class masses*, the very
mass shift batch weight removes. Reconstruction, semantic consistency and the teacher
stay uniform means (every image keeps its content). W minimises the sum of the squared
gaps of each critic: (Σ ω_x D_y(G_xy(x)) − mean D_y(y))², its mirror, and (Σ ω_x
c(e_x(x)) − Σ ω_y c(e_y(y)))², the critics' logits held fixed.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.lax import stop_gradient as sg

from jdbw import losses, nets, parallel
from jdbw import config as config_lib
from jdbw.errors import ConfigError
from jdbw.methods import base, dtn
from jdbw.methods.cyclegan import Runner, l1_per_sample, l2_per_sample


@dataclasses.dataclass(frozen=True)
class XGANConfig(dtn.FixedEncoderConfig, config_lib.MarginalTranslatorConfig):
  """XGAN's settings at 32x32 (networks sized for a CPU), loss weights 1, teacher off."""
  lr: float = 2e-4
  g_dim: int = 64   # help: DistanceGAN's field (one definition per setting)
  d_dim: int = 64
  e_dim: int = config_lib.setting(64, "XGAN encoders' base width.")
  dann_dim: int = config_lib.setting(128, "XGAN embedding classifier's hidden width.")
  rec_weight: float = config_lib.setting(1.0, "XGAN ω_rec: reconstruction weight.")
  dann_weight: float = config_lib.setting(1.0, "XGAN ω_dann: embedding adversary weight.")
  sem_weight: float = config_lib.setting(1.0, "XGAN ω_sem: semantic consistency weight.")
  gan_weight: float = config_lib.setting(1.0, "XGAN ω_gan: GAN weight (both translations).")
  teacher_weight: float = config_lib.setting(
      0.0, "XGAN ω_teach: teacher weight (0 = off; on: DTN's f, see --dtn_f).")

  BATCH_WEIGHTS = ("none", "two_sided")

  def check(self):
    config_lib.positive(self, "g_dim", "d_dim", "e_dim", "dann_dim")
    for f in ("rec_weight", "dann_weight", "sem_weight", "gan_weight", "teacher_weight"):
      if getattr(self, f) < 0:
        raise ConfigError(f"--{f}: got {getattr(self, f)}; expected >= 0")


class XGAN(base.MarginalTranslator):
  """XGAN; `batch_weight='two_sided'` is XGAN + batch weight."""

  name = "xgan"
  directions = ("xy", "yx")
  unroll_d_steps = True
  stochastic = False     # z is ignored

  @property
  def pretrains(self) -> bool:
    return self.config.teacher_weight > 0

  def module(self, part: str, name: str, axis_name=None):
    c = self.config
    net = dict(axis_name=axis_name, **self.kw)
    if part == "F":
      return dtn.f_module(c, **self.kw)
    if name in ("enc_x", "enc_y"):
      return nets.dtn.EncoderIn(dim=c.e_dim, **net)
    if name == "enc_shared":
      return nets.dtn.EncoderOut(dim=c.e_dim, features=c.embed_dim, **net)
    if name == "dec_shared":
      return nets.dtn.DecoderIn(dim=c.g_dim, resolution=c.resolution, **net)
    if name in ("dec_x", "dec_y"):
      return nets.dtn.DecoderOut(dim=c.g_dim, out_channels=getattr(c, f"channels_{name[-1]}"),
                                 **net)
    if name == "dann":
      return nets.dtn.EmbeddingCritic(c.dann_dim)
    return nets.cyclegan.DCGANDiscriminator(dim=c.d_dim, **net)

  def init_state(self, rng) -> base.TrainState:
    c = self.config
    x = jnp.zeros((2, *self.example_shape("x")))
    y = jnp.zeros((2, *self.example_shape("y")))
    r4 = c.resolution // 4
    inputs = {"enc_x": x, "enc_y": y, "enc_shared": jnp.zeros((2, r4, r4, 2 * c.e_dim)),
              "dec_shared": jnp.zeros((2, c.embed_dim)),
              "dec_x": jnp.zeros((2, r4, r4, 2 * c.g_dim)),
              "dec_y": jnp.zeros((2, r4, r4, 2 * c.g_dim)),
              "D_x": x, "D_y": y, "dann": jnp.zeros((2, c.embed_dim))}
    state_key, net_key = jax.random.split(rng)
    keys = iter(jax.random.split(net_key, 16))
    params, spectral = base.empty_parts(), base.empty_parts()
    names = {"G": ("enc_x", "enc_y", "enc_shared", "dec_shared", "dec_x", "dec_y"),
             "D": ("D_x", "D_y", "dann")}
    for part, group in names.items():
      for name in group:
        v = self.module(part, name).init(next(keys), inputs[name])
        params[part][name] = v["params"]
        if "batch_stats" in v:
          spectral[part][name] = v["batch_stats"]
    if self.pretrains:
      params["F"] = {"f": self.module("F", "f").init(next(keys), x)["params"]}
    params["W"], _ = self.bw.init(keys, x, y)
    opt_state = {k: self.tx[k].init(params[k]) for k in ("G", "D", "W")}
    return base.TrainState(step=jnp.zeros((), jnp.int32), rng=state_key, params=params,
                           spectral=spectral, opt_state=opt_state)

  def pretrain(self, state, specs, data_dir):
    if not self.pretrains:
      return state
    f = dtn.load_or_fit_f(specs["x"], self.config, data_dir, self.config.resolution)
    return state.replace(params={**state.params, "F": {"f": f}})

  # e_x, e_y: the embeddings; d_x, d_y: the decoders.
  @staticmethod
  def encode(run, side: str, images):
    return run("G", "enc_shared", run("G", f"enc_{side}", images))

  @staticmethod
  def decode(run, side: str, e):
    return run("G", f"dec_{side}", run("G", "dec_shared", e))

  def translate(self, params, spectral, images, z, direction: str):
    del z   # deterministic
    run = Runner(self, params, spectral, None, train=False)
    return self.decode(run, direction[1], self.encode(run, direction[0], images))

  # --- steps: (state, batch, rng) -> (state, metrics) ---

  def generator_step(self, state, batch, rng, axis_name=None):
    del rng
    c = self.config
    x, y = batch["x"], batch["y"]
    parts = ("G",) + self.bw.parts("generator")
    mean = lambda v: losses.batch_mean(v, axis_name)
    wsum = lambda v, w: losses.weighted_sum(v, sg(w), axis_name)
    bce = losses.bce_per_sample

    def loss_fn(params):
      run = Runner(self, params, state.spectral, axis_name, train=True)
      ex, ey = self.encode(run, "x", x), self.encode(run, "y", y)
      fy, fx = self.decode(run, "y", ex), self.decode(run, "x", ey)   # G_xy(x), G_yx(y)
      w_x, w_y = self.bw.weights(params["W"], x, sg(fy), sg(fx), y, state.step, axis_name)
      c_x, c_y = run("D", "dann", ex), run("D", "dann", ey)
      d_fy, d_fx = run("D", "D_y", fy), run("D", "D_x", fx)
      terms = {}
      if c.rec_weight:
        terms["rec"] = c.rec_weight * (mean(l2_per_sample(self.decode(run, "x", ex), x))
                                       + mean(l2_per_sample(self.decode(run, "y", ey), y)))
      if c.dann_weight:
        terms["dann"] = c.dann_weight * (wsum(bce(c_x, 0.0), w_x) + wsum(bce(c_y, 1.0), w_y))
      if c.sem_weight:
        terms["sem"] = c.sem_weight * (mean(l1_per_sample(ex, self.encode(run, "y", fy)))
                                       + mean(l1_per_sample(ey, self.encode(run, "x", fx))))
      if c.gan_weight:
        terms["adv"] = c.gan_weight * (wsum(bce(d_fy, 1.0), w_x) + wsum(bce(d_fx, 1.0), w_y))
      if self.pretrains:
        terms["teacher"] = c.teacher_weight * mean(l2_per_sample(run("F", "f", x), ex))
      loss = sum(terms.values())
      if "W" in parts:
        score = losses.score_per_sample
        terms["w_loss"] = (
            self.bw.marginal_w_loss((score(d_fy), w_x, score(run("D", "D_y", y))),
                                    (score(d_fx), w_y, score(run("D", "D_x", x))),
                                    axis_name=axis_name)
            + self.bw.joint_w_loss(c_x, c_y, w_x, w_y, axis_name))
        loss = loss + terms["w_loss"]
      return loss, (terms, (w_x, w_y), run.spectral)

    state, _, (terms, (w_x, w_y), spectral) = base.update(self.tx, state, parts, loss_fn,
                                                          axis_name)
    m = parallel.global_size(x.shape[0], axis_name)
    return state.replace(spectral=spectral), (base.step_metrics("g", terms),
                                              {"w_x": w_x * m, "w_y": w_y * m})

  def discriminator_step(self, state, batch, rng, axis_name=None):
    """D_y on real Y against G_xy(x) (ω_x), D_x mirrored (ω_y), c on the embeddings."""
    del rng
    x, y = batch["x"], batch["y"]
    run = Runner(self, state.params, state.spectral, axis_name, train=True)
    ex, ey = sg(self.encode(run, "x", x)), sg(self.encode(run, "y", y))
    fy, fx = sg(self.decode(run, "y", ex)), sg(self.decode(run, "x", ey))
    w_x, w_y = (sg(w) for w in self.bw.weights(state.params["W"], x, fy, fx, y, state.step,
                                                axis_name))
    mean = lambda v: losses.batch_mean(v, axis_name)
    wsum = lambda v, w: losses.weighted_sum(v, w, axis_name)
    bce = losses.bce_per_sample

    def loss_fn(params):
      d_run = Runner(self, params, run.spectral, axis_name, train=True)
      loss = (mean(bce(d_run("D", "D_y", y), 1.0)) + wsum(bce(d_run("D", "D_y", fy), 0.0), w_x)
              + mean(bce(d_run("D", "D_x", x), 1.0)) + wsum(bce(d_run("D", "D_x", fx), 0.0), w_y)
              + wsum(bce(d_run("D", "dann", ex), 1.0), w_x)
              + wsum(bce(d_run("D", "dann", ey), 0.0), w_y))
      return loss, d_run.spectral

    state, loss, spectral = base.update(self.tx, state, ("D",), loss_fn, axis_name)
    return state.replace(spectral=spectral), {"d/loss": loss}

  def iteration(self, state, batch, axis_name=None):
    return base.run_iteration(self, state, batch, axis_name)
