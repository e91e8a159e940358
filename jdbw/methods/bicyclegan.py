"""BiCycleGAN (Zhu et al. 2017): multimodal paired translation, as pure steps for the
shared loop.

Trained on pairs (`--pairing=same_draw`), like pix2pix. An encoder E maps a target
image to a Gaussian code z (mu, logvar; d_z = `noise_dim`, 8), and a U-Net generator
G(x, z) takes z tiled over the input's grid (the reference's where_add='input'). Each
device's batch is split by global index into two halves (even: A1/B1, odd: A2/B2; the
reference: the first and second half of its batch):

- cVAE-GAN: z_e = mu + σ ε from E(B1), G(A1, z_e) must fool D and equal B1:
  λ_GAN LSGAN(D(G(A1, z_e)), 1) + λ_L1 |G(A1, z_e) − B1|₁ + λ_KL KL(N(mu, σ²) ‖ N(0, I))
  (KL summed over the half batch and the code, as the reference);
- cLR-GAN: a random z_r ~ N(0, I), G(A1, z_r) must fool D2 (judged against B2), and E
  must recover it: λ_GAN2 LSGAN(D2(G(A1, z_r)), 1) + λ_latent |mu(E(G(A1, z_r))) − z_r|₁,
  the last term training G alone (E held fixed in it, as the reference).

G and E take one Adam step on the sum (the reference accumulates both backward passes
before stepping); D and D2 minimise LSGAN(real, 1) + LSGAN(fake, 0) each. λ_GAN =
λ_GAN2 = 1, λ_L1 = 10, λ_KL = 0.01, λ_latent = 0.5, Adam 2e-4 β1 0.5, linear decay.
Instance norm in G, E and both PatchGANs (the reference's default norm), no dropout.

Inference: G(x, z) with z = √2 erfinv(u) from the harness's noise u ~ U(−1, 1)^d (as
MUNIT's style), so Figure 4 and the noise metrics show the diversity the code z drives.
`reverse=True` adds an independent BiCycleGAN for Y → X (G_yx, E_x, D_x, D2_x).
Differences from the reference's loop: one compiled iteration (generator step first,
the critics on the next batch), one discriminator scale by default (the reference's two:
`--d_scales=2`),
per-sample draws keyed by global index (any device count trains the same function).
Batch weight does not apply (pairs; docs/methods.md).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.lax import stop_gradient as sg

from jdbw import losses, nets, parallel
from jdbw import config as config_lib
from jdbw.errors import ConfigError
from jdbw.methods import base, paired
from jdbw.methods.cyclegan import Runner, l1_per_sample
from jdbw.methods.munit import noise_from_style, style_from_noise


@dataclasses.dataclass(frozen=True)
class BiCycleGANConfig(paired.PairedConfig):
  """BiCycleGAN's settings: the reference's losses, weights and optimiser; networks sized
  for CPU at 32x32 (ngf, ndf, nef 32; the reference's 64 and its 256x256 PatchGAN are
  `--ngf=64 --ndf=64 --nef=64 --dis_layers=3`)."""
  l1_weight: float = 10.0
  nef: int = config_lib.setting(32, "bicyclegan: encoder E width (reference 64).")
  kl_weight: float = config_lib.setting(
      0.01, "bicyclegan: weight λ_KL of the encoded code's KL divergence (reference 0.01).")
  latent_weight: float = config_lib.setting(
      0.5, "bicyclegan: weight λ_latent of |E(G(x, z)) − z|, the code recovered from a"
      " random-code translation (reference 0.5).")
  d_scales: int = config_lib.setting(
      1, "bicyclegan: scales of each of D and D2 (the reference's --num_Ds 2: a second"
      " PatchGAN of half the width on the image average-pooled by 2); 1 at the CPU sizes.")

  MIN_RESOLUTION = 16   # the encoder pools an 8x8 map after at least one block

  def check_method(self):
    config_lib.positive(self, "nef", "d_scales")
    least = 2 ** (self.dis_layers + 2 + self.d_scales - 1)
    if self.resolution < least:
      raise ConfigError(f"--d_scales: {self.d_scales} scales of a {self.dis_layers}-layer"
                        f" PatchGAN need --resolution of at least {least}; got"
                        f" {self.resolution}")
    if min(self.kl_weight, self.latent_weight) < 0:
      raise ConfigError("--kl_weight and --latent_weight: expected >= 0")


def halves(images):
  """(even, odd) samples of a device's batch: with an even batch per device, the even
  and odd global indices, whatever the device count."""
  if images.shape[0] % 2:
    raise ConfigError(f"--batch_size: bicyclegan splits each device's batch into two halves"
                      f" (encoded and random codes); got {images.shape[0]} per device:"
                      " expected an even number")
  return images[0::2], images[1::2]


class BiCycleGAN(paired.PairedTranslator):
  """BiCycleGAN on (x, y) pairs; `reverse=True` adds the Y -> X BiCycleGAN."""

  name = "bicyclegan"
  encodes_style = True

  def module(self, part: str, name: str, axis_name=None):
    """G_xy: U-Net(x, z) to Y; E_y: Y's encoder; D_y, D2_y: PatchGANs on Y images."""
    c = self.config
    if name.startswith("G_"):
      out = c.channels_y if name == "G_xy" else c.channels_x
      return nets.pix2pix.UnetGenerator(out, c.ngf, self.levels, 0, None, "in", **self.kw)
    if name.startswith("E_"):
      return nets.pix2pix.ResNetEncoder(c.noise_dim, c.nef, self.levels - 3, **self.kw)
    if c.d_scales > 1:
      return nets.pix2pix.MultiScalePatchDiscriminator(c.ndf, c.dis_layers, c.d_scales,
                                                       **self.kw)
    return nets.cyclegan.PatchDiscriminator(c.ndf, c.dis_layers, **self.kw)

  def network_names(self) -> dict:
    return {"G": sum(((f"G_{d}", f"E_{d[1]}") for d in self.directions), ()),
            "D": sum(((f"D_{d[1]}", f"D2_{d[1]}") for d in self.directions), ())}

  def init_state(self, rng) -> base.TrainState:
    c = self.config
    images = {s: jnp.zeros((2, *self.example_shape(s))) for s in ("x", "y")}
    z, keys = jnp.zeros((2, c.noise_dim)), jnp.zeros((2, 2), jnp.uint32)
    state_key, net_key = jax.random.split(rng)
    net_keys = iter(jax.random.split(net_key, 8))
    params, spectral = base.empty_parts(), base.empty_parts()
    for d in self.directions:
      src, tgt = images[d[0]], images[d[1]]
      for part, name, inputs in (("G", f"G_{d}", (nets.with_tiled_noise(src, z), keys)),
                                 ("G", f"E_{d[1]}", (tgt,)), ("D", f"D_{d[1]}", (tgt,)),
                                 ("D", f"D2_{d[1]}", (tgt,))):
        params[part][name] = self.module(part, name).init(next(net_keys), *inputs)["params"]
    params["W"], _ = self.bw.init(net_keys, images["x"], images["y"])
    opt_state = {k: self.tx[k].init(params[k]) for k in ("G", "D", "W")}
    return base.TrainState(step=jnp.zeros((), jnp.int32), rng=state_key, params=params,
                           spectral=spectral, opt_state=opt_state)

  def generate(self, run, direction: str, x, z):
    """G(x, z): the code tiled over the input's grid (no dropout: keys unused)."""
    keys = jnp.zeros((x.shape[0], 2), jnp.uint32)
    return run("G", f"G_{direction}", nets.with_tiled_noise(x, z), keys)

  def translate(self, params, spectral, images, z, direction: str):
    run = Runner(self, params, spectral, None, train=False)
    return self.generate(run, direction, images, style_from_noise(z))

  def encode_noise(self, params, spectral, images, direction: str):
    """E's mean code of target images (the reference's encode at test time), as noise."""
    mu, _ = Runner(self, params, spectral, None, train=False)("G", f"E_{direction[1]}", images)
    return noise_from_style(mu)

  def _codes_and_fakes(self, run, direction, src, tgt, rng, axis_name):
    """(mu, logvar, z_random, fake from the encoded code, fake from the random code) of
    one direction, on the halves of `src` and `tgt`."""
    a1, _ = halves(src)
    b1, _ = halves(tgt)
    idx, nz = base.global_index(a1.shape[0], axis_name), (self.config.noise_dim,)
    mu, logvar = run("G", f"E_{direction[1]}", b1)
    z_enc = mu + base.per_sample_normal(jax.random.fold_in(rng, 0), idx, nz) * jnp.exp(
        0.5 * logvar)
    z_rand = base.per_sample_normal(jax.random.fold_in(rng, 1), idx, nz)
    return (mu, logvar, z_rand, self.generate(run, direction, a1, z_enc),
            self.generate(run, direction, a1, z_rand))

  # --- steps: (state, batch, rng) -> (state, metrics) ---

  def generator_step(self, state, batch, rng, axis_name=None):
    """G and E: the cVAE-GAN and cLR-GAN terms above, per direction."""
    c = self.config

    def loss_fn(params):
      run = Runner(self, params, state.spectral, axis_name, train=True)
      held_e = Runner(self, {**params, "G": sg(params["G"])}, state.spectral, axis_name,
                      train=True)   # E fixed in the latent term (G's input is not)
      terms = {"adv": 0.0, "l1": 0.0, "kl": 0.0, "latent": 0.0}
      mean = lambda v: losses.batch_mean(v, axis_name)
      for k, d in enumerate(self.directions):
        tgt = batch[d[1]]
        mu, logvar, z_rand, fake_enc, fake_rand = self._codes_and_fakes(
            run, d, batch[d[0]], tgt, jax.random.fold_in(rng, k), axis_name)
        b1, _ = halves(tgt)
        terms["adv"] += (mean(losses.lsgan_per_sample(run("D", f"D_{d[1]}", fake_enc), 1.0))
                         + mean(losses.lsgan_per_sample(run("D", f"D2_{d[1]}", fake_rand),
                                                        1.0)))
        terms["l1"] += c.l1_weight * mean(l1_per_sample(fake_enc, b1))
        kl = jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar))
        terms["kl"] += -0.5 * c.kl_weight * parallel.psum(kl, axis_name)
        mu2, _ = held_e("G", f"E_{d[1]}", fake_rand)
        terms["latent"] += c.latent_weight * mean(jnp.mean(jnp.abs(mu2 - z_rand), axis=-1))
      return sum(terms.values()), terms

    state, _, terms = base.update(self.tx, state, ("G",), loss_fn, axis_name)
    return state, (base.step_metrics("g", terms), self.uniform_weights(batch))

  def discriminator_step(self, state, batch, rng, axis_name=None):
    """D: LSGAN(D(B1), 1) + LSGAN(D(G(A1, z_e)), 0); D2 the same with B2 and z_r."""
    run = Runner(self, state.params, state.spectral, axis_name, train=True)
    fakes = {}
    for k, d in enumerate(self.directions):
      *_, fake_enc, fake_rand = self._codes_and_fakes(run, d, batch[d[0]], batch[d[1]],
                                                      jax.random.fold_in(rng, k), axis_name)
      fakes[d] = sg((fake_enc, fake_rand))

    def loss_fn(params):
      d_run = Runner(self, params, state.spectral, axis_name, train=True)
      total = 0.0
      mean = lambda v: losses.batch_mean(v, axis_name)
      for d in self.directions:
        b1, b2 = halves(batch[d[1]])
        for name, real, fake in ((f"D_{d[1]}", b1, fakes[d][0]),
                                 (f"D2_{d[1]}", b2, fakes[d][1])):
          total = total + (mean(losses.lsgan_per_sample(d_run("D", name, real), 1.0))
                           + mean(losses.lsgan_per_sample(d_run("D", name, fake), 0.0)))
      return total, None

    state, loss, _ = base.update(self.tx, state, ("D",), loss_fn, axis_name)
    return state, {"d/loss": loss}
