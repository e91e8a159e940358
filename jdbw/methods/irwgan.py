"""IrwGAN (Xie et al., ICCV 2021, "Unaligned image-to-image translation by learning to
reweight"; the authors' Mid-Push/IrwGAN), as a CycleGAN with learned sample weights.

Two reweighting networks β_x(x), β_y(y) (`jdbw.nets.cyclegan.BetaNet`, the state's 'W'
part) give each image of a batch a weight: a softmax over the (global) batch times its
size m, so the weights are positive and average 1, and a weight at or below `threshold`
(0.1) counts as 0 in the losses. An image's weight multiplies everything in its own
translation and in the critic that sees it as real (the authors' `compute_loss_G`,
`dis_loss`):

  L_G = mean_i β_x,i [L_adv(D_y(G_xy(x_i))) + λ |G_yx(G_xy(x_i)) − x_i|₁ + λ λ_idt |G_yx(x_i) − x_i|₁]
        + the mirror with β_y                                      λ = 10, λ_idt = 1
  L_D_y = mean_j β_y,j (D_y(y_j) − 1)² + mean_i D_y(G_xy(x_i))²     (fakes unweighted)

with LSGAN terms and the weights held fixed (the authors' identity term maps x through
G_yx, kept so). The weighting networks minimise, after the generator's update,

  L_β = mean_i β_x,i a_x,i + mean_j β_y,j a_y,j + λ_nos (‖β_x‖₂ + ‖β_y‖₂) / m

where a_i is image i's *unweighted* generator adversarial loss (D's verdict on its
translation, held fixed, from before G's update) and the norm penalty (λ_nos = 1) pulls
the weights toward uniform (with Σ β = m the norm is smallest at β = 1). So β puts mass
on the images whose translations already fool D, the ones that can be aligned with the
other domain, and the others drop out of every loss.

How this differs from batch weight (docs/methods.md): IrwGAN weights an image in all of
its own losses (cycle and identity included) and in the real side of the critic,
normalised over the batch by a softmax of the image alone, trained on the generator's
per-sample GAN loss plus a norm penalty, so it *selects* samples; batch weight weights
the adversarial terms only, trained to close the critic's gap between re-weighted
domains, so it re-balances mode masses.

Where this differs from the authors' code: CycleGAN's ResNet generator and LSGAN
PatchGAN of this harness (theirs: a MUNIT-style up-sampling generator and a two-head
spectral-norm PatchGAN); the batch through the networks at once (theirs: per sample,
gradients accumulated); the β update in the generator step, after G's (theirs: after
D's); no 64x64 average-pool in front of β (32x32 inputs); the threshold applies in the G
and D losses, not in L_β. Deterministic: z is ignored.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.lax import stop_gradient as sg

from jdbw import batch_weight, losses, nets, optim, parallel
from jdbw import config as config_lib
from jdbw.errors import ConfigError
from jdbw.methods import base, cyclegan
from jdbw.methods.cyclegan import Runner, l1_per_sample


@dataclasses.dataclass(frozen=True)
class IrwGANConfig(cyclegan.CycleGANConfig):
  """The authors' defaults: λ 10, identity 1 (×λ), Adam 1e-4 β1 0.5 with weight decay
  1e-4 for every part, no history pool, discriminator losses not halved."""
  lr: float = 1e-4
  weight_decay: float = 1e-4
  identity_weight: float = 1.0
  pool_size: int = 0
  d_loss_scale: float = 1.0
  beta_dim: int = config_lib.setting(16, "IrwGAN reweighting networks' width (authors: ndf 64).")
  beta_layers: int = config_lib.setting(4, "IrwGAN reweighting networks' 4x4/2 convolutions.")
  threshold: float = config_lib.setting(
      0.1, "IrwGAN: a weight (mean 1 over the batch) at or below this counts as 0.")
  nos_weight: float = config_lib.setting(
      1.0, "IrwGAN λ_nos: the weights' norm penalty (higher keeps more samples).")

  BATCH_WEIGHTS = ("none",)   # its own weights; batch weight is not composed

  def check(self):
    super().check()
    config_lib.positive(self, "beta_dim", "beta_layers")
    if self.pool_size or self.bw_reconstruction:
      raise ConfigError("--pool_size and --bw_reconstruction: IrwGAN has no history pool and"
                        " no batch weight; set --pool_size=0 --nobw_reconstruction")
    if self.threshold < 0 or self.nos_weight < 0:
      raise ConfigError("--threshold and --nos_weight: expected >= 0")
    if self.resolution < 2 ** (self.beta_layers + 1):
      raise ConfigError(f"--beta_layers: {self.beta_layers} halvings need --resolution >="
                        f" {2 ** (self.beta_layers + 1)}; got {self.resolution}")


def sample_weights(logits, axis_name=None):
  """β: softmax over the global batch times its size (mean 1)."""
  m = parallel.global_size(logits.shape[0], axis_name)
  return batch_weight.softmax_weights(logits, None, axis_name) * m


def beta_objective(logits: dict, adv: dict, nos_weight: float, axis_name=None):
  """L_β of the β logits {'x', 'y'} given each image's unweighted generator adversarial
  loss `adv` (held fixed): mean β a + λ_nos ‖β‖₂ / m per side."""
  total = 0.0
  for s, a in logits.items():
    m = parallel.global_size(a.shape[0], axis_name)
    b = sample_weights(a, axis_name)
    norm = jnp.sqrt(parallel.psum(jnp.sum(jnp.square(b)), axis_name))
    total = total + losses.batch_mean(b * sg(adv[s]), axis_name) \
        + nos_weight * norm / m
  return total


class IrwGAN(cyclegan.CycleGAN):
  """IrwGAN: CycleGAN whose every per-image loss is weighted by learned β."""

  name = "irwgan"

  def __init__(self, config: IrwGANConfig):
    super().__init__(config)
    self.tx["W"] = optim.adam_optimizer(self.config)   # β's Adam (the authors': as G's)

  @property
  def weighted_sides(self) -> tuple[str, ...]:
    return ("x", "y")

  def module(self, part: str, name: str, axis_name=None):
    if part == "W":
      return nets.cyclegan.BetaNet(self.config.beta_dim, self.config.beta_layers, **self.kw)
    return super().module(part, name, axis_name)

  def init_state(self, rng) -> base.TrainState:
    state = super().init_state(rng)
    keys = jax.random.split(jax.random.fold_in(rng, 1), 2)
    params = dict(state.params)
    params["W"] = {f"beta_{s}": self.module("W", f"beta_{s}").init(
        k, jnp.zeros((2, *self.example_shape(s))))["params"] for s, k in zip("xy", keys)}
    return state.replace(params=params, opt_state={**state.opt_state,
                                                   "W": self.tx["W"].init(params["W"])})

  def beta_logits(self, params, side, images):
    return self.module("W", f"beta_{side}").apply({"params": params["W"][f"beta_{side}"]},
                                                  images)

  def thresholded(self, beta):
    return jnp.where(beta > self.config.threshold, beta, 0.0)

  # --- the evaluator's and Figure 3's view of the weights ---

  def weight_logits(self, params, x, fx, fy, y) -> dict:
    return {"x": [self.beta_logits(params, "x", x)], "y": [self.beta_logits(params, "y", y)]}

  def normalise_weights(self, logits: dict, n: int, step, axis_name=None):
    """The weights the losses use, as a distribution: β thresholded, renormalised."""
    out = []
    for s in ("x", "y"):
      w = self.thresholded(sample_weights(logits[s][0], axis_name))
      out.append(w / parallel.psum(w.sum(), axis_name))
    return tuple(out)

  # --- steps ---

  def generator_step(self, state, batch, rng, axis_name=None):
    """G on the β-weighted CycleGAN losses, then β on L_β (G's per-image GAN losses)."""
    del rng
    c = self.config
    x, y = batch["x"], batch["y"]
    beta = {s: sg(sample_weights(self.beta_logits(state.params, s, batch[s]), axis_name))
            for s in ("x", "y")}
    used = {s: self.thresholded(b) for s, b in beta.items()}
    mean = lambda v: losses.batch_mean(v, axis_name)

    def g_loss(params):
      run = Runner(self, params, state.spectral, axis_name, train=True)
      fy, fx = run("G", "G_xy", x), run("G", "G_yx", y)
      adv = {"x": losses.lsgan_per_sample(run("D", "D_y", fy), 1.0),
             "y": losses.lsgan_per_sample(run("D", "D_x", fx), 1.0)}
      terms = {"adv": mean(used["x"] * adv["x"]) + mean(used["y"] * adv["y"])}
      if c.cycle_weight:
        terms["cycle"] = c.cycle_weight * (mean(used["x"] * l1_per_sample(run("G", "G_yx", fy), x))
                                           + mean(used["y"] * l1_per_sample(run("G", "G_xy", fx), y)))
      if c.identity_weight and c.cycle_weight:
        terms["identity"] = c.cycle_weight * c.identity_weight * (
            mean(used["x"] * l1_per_sample(run("G", "G_yx", x), x))
            + mean(used["y"] * l1_per_sample(run("G", "G_xy", y), y)))
      return sum(terms.values()), (terms, adv, run.spectral)

    state, _, (terms, adv, spectral) = base.update(self.tx, state, ("G",), g_loss, axis_name)
    state = state.replace(spectral=spectral)

    def beta_loss(params):
      logits = {s: self.beta_logits(params, s, batch[s]) for s in ("x", "y")}
      return beta_objective(logits, adv, c.nos_weight, axis_name), None

    state, w_loss, _ = base.update(self.tx, state, ("W",), beta_loss, axis_name)
    terms["w_loss"] = w_loss
    return state, (base.step_metrics("g", terms), {"w_x": beta["x"], "w_y": beta["y"]})

  def discriminator_step(self, state, batch, rng, axis_name=None):
    """LSGAN critics, each real image weighted by its own β (thresholded), fakes plain."""
    del rng
    c = self.config
    x, y = batch["x"], batch["y"]
    run = Runner(self, state.params, state.spectral, axis_name, train=True)
    fake = sg({"y": run("G", "G_xy", x), "x": run("G", "G_yx", y)})
    used = {s: sg(self.thresholded(sample_weights(
        self.beta_logits(state.params, s, batch[s]), axis_name))) for s in ("x", "y")}
    mean = lambda v: losses.batch_mean(v, axis_name)

    def loss_fn(params):
      d_run = Runner(self, params, run.spectral, axis_name, train=True)
      total = 0.0
      for s in ("x", "y"):
        real = mean(used[s] * losses.lsgan_per_sample(d_run("D", f"D_{s}", batch[s]), 1.0))
        total = total + c.d_loss_scale * (
            real + mean(losses.lsgan_per_sample(d_run("D", f"D_{s}", fake[s]), 0.0)))
      return total, d_run.spectral

    state, loss, spectral = base.update(self.tx, state, ("D",), loss_fn, axis_name)
    return state.replace(spectral=spectral), {"d/loss": loss}
