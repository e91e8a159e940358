"""MUNIT (Huang et al. 2018) and MUNIT + batch weight, as pure steps for the shared loop.

Domains X (a) and Y (b), each with an AdaIN generator G_x / G_y (content encoder,
style encoder, decoder) and an LSGAN multi-scale discriminator D_x / D_y. Translation
x -> y decodes x's content with a style s ~ N(0, I) in G_y. Losses as MUNIT's trainer:
LSGAN adversarial (gan_w), image reconstruction (recon_x_w), style and content
reconstruction of the translations (recon_s_w, recon_c_w), optional explicit cycle
(recon_x_cyc_w, 0 by default).

Batch weight (`batch_weight='two_sided'`): the composite weight networks W_x, W_y and
the normalisation of `jdbw.batch_weight` give per-sample weights ω_x (for the sources
x) and ω_y (for the sources y). They weight the *fake side* of each domain's GAN loss,
each sample's weight on the translation made from that very sample: in D_y's loss and
G's adversarial term the translations G_xy(x_i) count ω_x,i, in D_x's those of G_yx(y_j)
count ω_y,j; the real sides keep uniform weights. Why: a weight re-weights the mass of
its own source domain, and in a marginal GAN that mass reaches the other domain's
discriminator only through its translations. (The authors' public snapshot also weights
the fake side, but applies each domain's weights to the translations made from the
*other* domain's samples, which re-weights nothing it can see; we do not copy that.) W minimises Σ_domains (weighted mean fake score − mean real score)²,
the squared critic gap, with the critic scores fixed. With `batch_weight='none'`,
ω = 1/m and every loss is exactly MUNIT's batch mean.

The harness's noise z ~ U(-1, 1)^d becomes the style code s = √2 erfinv(z) ~ N(0, I)
(the prior's inverse CDF), so the inference API and the Figure 4 grid work unchanged.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.lax import stop_gradient as sg

from jdbw import batch_weight, losses, nets, optim, parallel
from jdbw.nets import layers
from jdbw import config as config_lib
from jdbw.methods import base

BATCH_WEIGHTS = ("none", "two_sided")


@dataclasses.dataclass(frozen=True)
class MUNITConfig(config_lib.MarginalTranslatorConfig):
  """MUNIT's SR-MNIST settings (authors' code) by default; saved with the workdir.

  Shared sections from `jdbw.config`, with the marginal translators' defaults (no batch
  weight, 1 D step, the clip relaxed by step 1000) and MUNIT's weight decay 1e-4.
  """
  weight_decay: float = 1e-4
  gen_dim: int = config_lib.setting(64, "Generator width (munit; balagan: its FUNIT generator).")
  mlp_dim: int = config_lib.setting(256, "MUNIT AdaIN-MLP width.")
  n_downsample: int = config_lib.setting(1, "MUNIT content down-samplings.")
  n_res: int = config_lib.setting(2, "MUNIT residual blocks.")
  style_downsample: int = config_lib.setting(4, "MUNIT style-encoder down-samplings.")
  dis_dim: int = config_lib.setting(
      64, "Discriminator width (munit; balagan: its FUNIT discriminator).")
  dis_layers: int = 4
  dis_scales: int = config_lib.setting(1, "MUNIT discriminator scales.")
  gan_w: float = config_lib.setting(
      1.0, "Adversarial weight (munit; balagan: also its classification term's).")
  recon_x_w: float = config_lib.setting(10.0, "MUNIT image reconstruction weight.")
  recon_s_w: float = config_lib.setting(1.0, "MUNIT style reconstruction weight.")
  recon_c_w: float = config_lib.setting(1.0, "MUNIT content reconstruction weight.")
  recon_x_cyc_w: float = config_lib.setting(0.0, "MUNIT explicit cycle weight.")

  BATCH_WEIGHTS = BATCH_WEIGHTS

  def check(self):
    from jdbw.errors import ConfigError
    config_lib.positive(self, "gen_dim", "mlp_dim", "n_res", "dis_dim", "dis_layers",
                        "dis_scales")
    if self.resolution % 2 ** max(self.n_downsample, self.style_downsample, self.dis_layers):
      raise ConfigError(f"--resolution: {self.resolution} must divide by 2^(number of"
                        " down-sampling layers)")


def style_from_noise(z):
  """U(-1, 1) -> N(0, 1) elementwise by the normal inverse CDF: s = √2 erfinv(z)."""
  z = jnp.clip(z, -1.0 + 1e-6, 1.0 - 1e-6)
  return jnp.sqrt(2.0) * jax.scipy.special.erfinv(z)


def noise_from_style(s):
  """N(0, 1) -> U(-1, 1), the inverse of `style_from_noise`: z = erf(s / √2)."""
  return jnp.clip(jax.scipy.special.erf(s / jnp.sqrt(2.0)), -1.0 + 1e-6, 1.0 - 1e-6)


class MUNIT(base.MarginalTranslator):
  """MUNIT; `batch_weight='two_sided'` is MUNIT + batch weight (the paper's ablation)."""

  name = "munit"
  encodes_style = True

  def __init__(self, config: MUNITConfig):
    self.config = c = config.validate()
    kw = dict(impl=c.conv_impl, dtype=layers.compute_dtype(c.compute_dtype))
    gen = functools.partial(nets.munit.AdaINGenerator, dim=c.gen_dim, style_dim=c.noise_dim,
                            mlp_dim=c.mlp_dim, n_down=c.n_downsample, n_res=c.n_res,
                            style_down=c.style_downsample, **kw)
    self.G = {"G_x": gen(out_channels=c.channels_x), "G_y": gen(out_channels=c.channels_y)}
    dis = functools.partial(nets.munit.MsImageDis, dim=c.dis_dim, n_layer=c.dis_layers,
                            num_scales=c.dis_scales, **kw)
    self.D = {"D_x": dis(), "D_y": dis()}
    self.bw = batch_weight.BatchWeight.build(
        c.batch_weight, functools.partial(nets.WeightNet, features=c.w_features, **kw),
        scheme="composite", norm=c.weight_norm, bw_start=c.bw_start, bw_full=c.bw_full)
    self.tx = {k: optim.adam_optimizer(c) for k in ("G", "D")}
    self.tx["W"] = self.bw.optimizer(c, c.w_lr)

  directions = ("xy", "yx")
  unroll_d_steps = True

  def init_state(self, rng) -> base.TrainState:
    c = self.config
    r = c.resolution
    x = jnp.zeros((1, r, r, c.channels_x))
    y = jnp.zeros((1, r, r, c.channels_y))
    s = jnp.zeros((1, c.noise_dim))
    keys = iter(jax.random.split(rng, 8))
    params = {"G": {"G_x": self.G["G_x"].init(next(keys), x, s)["params"],
                    "G_y": self.G["G_y"].init(next(keys), y, s)["params"]},
              "D": {"D_x": self.D["D_x"].init(next(keys), x)["params"],
                    "D_y": self.D["D_y"].init(next(keys), y)["params"]},
              "W": {}}
    params["W"], _ = self.bw.init(keys, x, y)   # WeightNet has no spectral norm
    opt_state = {k: self.tx[k].init(params[k]) for k in ("G", "D", "W")}
    return base.TrainState(step=jnp.zeros((), jnp.int32), rng=next(keys), params=params,
                         spectral={"G": {}, "D": {}, "W": {}}, opt_state=opt_state)

  # --- forward pieces ---

  def encode(self, params, name, images):
    return self.G[name].apply({"params": params["G"][name]}, images,
                              method=nets.munit.AdaINGenerator.encode)

  def decode(self, params, name, content, style):
    return self.G[name].apply({"params": params["G"][name]}, content, style,
                              method=nets.munit.AdaINGenerator.decode)

  def discriminate(self, params, name, images):
    return self.D[name].apply({"params": params["D"][name]}, images)

  def translate(self, params, spectral, images, z, direction: str):
    del spectral  # MUNIT has no spectral norm.
    src, tgt = {"xy": ("G_x", "G_y"), "yx": ("G_y", "G_x")}[direction]
    content, _ = self.encode(params, src, images)
    return self.decode(params, tgt, content, style_from_noise(z))

  def encode_noise(self, params, spectral, images, direction: str):
    """The style of target images by the target domain's style encoder, as noise."""
    del spectral
    _, style = self.encode(params, {"xy": "G_y", "yx": "G_x"}[direction], images)
    return noise_from_style(style)

  def _styles(self, key, n, axis_name):
    """Prior style codes s_x, s_y ~ N(0, I), one per sample keyed by its global index."""
    idx = base.global_index(n, axis_name)
    kx, ky = jax.random.split(key)
    d = self.config.noise_dim
    return base.per_sample_normal(kx, idx, (d,)), base.per_sample_normal(ky, idx, (d,))

  def _translations(self, params, x, y, s_x, s_y):
    c_x, s_x_own = self.encode(params, "G_x", x)
    c_y, s_y_own = self.encode(params, "G_y", y)
    return {"c_x": c_x, "c_y": c_y, "s_x_own": s_x_own, "s_y_own": s_y_own,
            "xy": self.decode(params, "G_y", c_x, s_y),   # x -> y with a prior style
            "yx": self.decode(params, "G_x", c_y, s_x)}   # y -> x

  def _l1(self, a, b, axis_name):
    per_sample = jnp.mean(jnp.abs(a - b).reshape(a.shape[0], -1), -1)
    return losses.batch_mean(per_sample, axis_name)

  # --- steps: (state, batch, rng) -> (state, metrics) ---

  def generator_step(self, state, batch, rng, axis_name=None):
    """MUNIT's gen_update, adversarial terms weighted by ω; W on the squared critic gap."""
    c = self.config
    x, y = batch["x"], batch["y"]
    s_x, s_y = self._styles(rng, x.shape[0], axis_name)
    parts = ("G",) + self.bw.parts("generator")
    lsgan = self.bw.lsgan_term

    def loss_fn(params):
      t = self._translations(params, x, y, s_x, s_y)
      x_rec = self.decode(params, "G_x", t["c_x"], t["s_x_own"])
      y_rec = self.decode(params, "G_y", t["c_y"], t["s_y_own"])
      c_y_rec, s_x_rec = self.encode(params, "G_x", t["yx"])
      c_x_rec, s_y_rec = self.encode(params, "G_y", t["xy"])
      l1 = functools.partial(self._l1, axis_name=axis_name)
      terms = {"recon_x": l1(x_rec, x) + l1(y_rec, y),
               "recon_s": l1(s_x_rec, s_x) + l1(s_y_rec, s_y),
               "recon_c": l1(c_x_rec, t["c_x"]) + l1(c_y_rec, t["c_y"])}
      if c.recon_x_cyc_w:
        x_cyc = self.decode(params, "G_x", c_x_rec, t["s_x_own"])
        y_cyc = self.decode(params, "G_y", c_y_rec, t["s_y_own"])
        terms["recon_cyc"] = l1(x_cyc, x) + l1(y_cyc, y)
      w_x, w_y = self.bw.weights(params["W"], x, sg(t["xy"]), sg(t["yx"]), y, state.step,
                                 axis_name)
      d_xy = self.discriminate(params, "D_y", t["xy"])
      d_yx = self.discriminate(params, "D_x", t["yx"])
      terms["adv"] = lsgan(d_xy, 1.0, sg(w_x), axis_name) + lsgan(d_yx, 1.0, sg(w_y), axis_name)
      loss = (c.gan_w * terms["adv"] + c.recon_x_w * terms["recon_x"]
              + c.recon_s_w * terms["recon_s"] + c.recon_c_w * terms["recon_c"]
              + c.recon_x_cyc_w * terms.get("recon_cyc", 0.0))
      if "W" in parts:
        score = losses.score_per_sample
        terms["w_loss"] = self.bw.marginal_w_loss(
            (score(d_yx), w_y, score(self.discriminate(params, "D_x", x))),
            (score(d_xy), w_x, score(self.discriminate(params, "D_y", y))), axis_name=axis_name)
        loss = loss + terms["w_loss"]
      return loss, (terms, w_x, w_y)

    state, _, (terms, w_x, w_y) = base.update(self.tx, state, parts, loss_fn, axis_name)
    m = parallel.global_size(x.shape[0], axis_name)
    return state, (base.step_metrics("g", terms), {"w_x": w_x * m, "w_y": w_y * m})

  def discriminator_step(self, state, batch, rng, axis_name=None):
    """MUNIT's dis_update (LSGAN), the fake side of each domain weighted by ω."""
    c = self.config
    x, y = batch["x"], batch["y"]
    s_x, s_y = self._styles(rng, x.shape[0], axis_name)
    t = sg(self._translations(state.params, x, y, s_x, s_y))
    w_x, w_y = self.bw.weights(state.params["W"], x, t["xy"], t["yx"], y, state.step,
                               axis_name)
    lsgan = self.bw.lsgan_term

    def loss_fn(params):
      d = functools.partial(self.discriminate, params)
      fake = (lsgan(d("D_y", t["xy"]), 0.0, w_x, axis_name)
              + lsgan(d("D_x", t["yx"]), 0.0, w_y, axis_name))
      real = (losses.batch_mean(losses.lsgan_per_sample(d("D_y", y), 1.0), axis_name)
              + losses.batch_mean(losses.lsgan_per_sample(d("D_x", x), 1.0), axis_name))
      return c.gan_w * (fake + real), None

    state, loss, _ = base.update(self.tx, state, ("D",), loss_fn, axis_name)
    return state, {"d/loss": loss}

  def iteration(self, state, batch, axis_name=None):
    """One generator step then d discriminator steps, one compiled call (see JD)."""
    return base.run_iteration(self, state, batch, axis_name)
