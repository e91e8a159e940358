"""pix2pix (Isola et al. 2017): paired translation, as pure steps for the shared loop.

Trained on pairs (`--pairing=same_draw`: y is x's own image through Y's transform): a
U-Net generator G_xy with dropout (`jdbw.nets.pix2pix`) and a conditional PatchGAN D_y
on the pair (x, y) concatenated along channels, with batch norm. The reference's losses
(`pix2pix_model.py` of pytorch-CycleGAN-and-pix2pix, gan_mode 'vanilla'):

  L_G = BCE(D_y(x, G_xy(x)), 1) + λ |G_xy(x) − y|₁                             λ = 100
  L_D = ½ [BCE(D_y(x, y), 1) + BCE(D_y(x, G_xy(x)), 0)]

BCE on logits, averaged over the patch map and the global batch; no history pool;
Adam 2e-4, β1 0.5, the learning rate held then decayed linearly to 0 (`lr_hold_steps`,
`lr_linear_decay`, as CycleGAN's). pix2pix translates one way; `reverse=True` also
trains G_yx and D_x on the swapped pairs, a second pix2pix that shares nothing with the
first but the batches, so that one run reports both directions.

The noise is the U-Net's dropout, kept at test time as in the reference: in training
each sample's masks come from the step's key folded with its global index (any device
count draws the same masks); at inference from the noise z the harness passes (its first
two numbers, as the sample's key), so Figure 4 and the evaluator's noise metrics show
what dropout varies. Inference uses batch norm's running averages (the reference's
test-time default uses the test batch's statistics; docs/paper_map.md).

Where this differs from the reference's loop (one compiled iteration of the shared
harness): the generator step comes first and the discriminator trains on the next batch
of the stream, translated by the just-updated generator. Batch weight does not apply:
pairs fix the correspondence, so there is no mode mass to re-weight
(docs/methods.md).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jdbw import losses, nets
from jdbw import config as config_lib
from jdbw.errors import ConfigError
from jdbw.methods import base, paired
from jdbw.methods.cyclegan import Runner, l1_per_sample


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig(paired.PairedConfig):
  """pix2pix's settings: the reference's losses and optimiser (`jdbw.methods.paired`),
  networks sized for CPU at 32x32 (the reference's 64 widths are `--ngf=64 --ndf=64`, its
  70x70 PatchGAN at 256x256 `--dis_layers=3`); unet_256 at 256, unet_128 at 128."""
  dropout_levels: int = config_lib.setting(
      3, "pix2pix: U-Net up-sampling levels with dropout 0.5, the innermost first: its noise"
      " (the reference: 3 at 256x256, none at 32x32; docs/paper_map.md).")

  def check_method(self):
    levels = int(math.log2(self.resolution))
    if not 0 <= self.dropout_levels <= levels - 2:
      raise ConfigError(f"--dropout_levels: got {self.dropout_levels}; expected 0 to"
                        f" {levels - 2} at resolution {self.resolution}")
    if self.noise_dim < 2:
      raise ConfigError(f"--noise_dim: got {self.noise_dim}; pix2pix seeds its dropout"
                        " from the first two noise values: expected >= 2")


def sample_keys(rng, n_local: int, axis_name=None):
  """One dropout key per sample of this device's batch (`base.per_sample_keys`)."""
  return base.per_sample_keys(rng, base.global_index(n_local, axis_name))


def noise_keys(z):
  """One PRNG key per sample from the harness's noise z (its first two numbers' bits)."""
  return jax.lax.bitcast_convert_type(z[:, :2].astype(jnp.float32), jnp.uint32)


class Pix2Pix(paired.PairedTranslator):
  """pix2pix on (x, y) pairs; `reverse=True` adds the Y -> X pix2pix."""

  name = "pix2pix"

  def module(self, part: str, name: str, axis_name=None):
    """G_xy / G_yx: U-Nets to Y / X; D_y / D_x: conditional PatchGANs on pairs."""
    c = self.config
    if part == "G":
      out = c.channels_y if name == "G_xy" else c.channels_x
      return nets.pix2pix.UnetGenerator(out, c.ngf, self.levels, c.dropout_levels, axis_name,
                                        **self.kw)
    return nets.cyclegan.PatchDiscriminator(c.ndf, c.dis_layers, "bn", axis_name, **self.kw)

  def network_names(self) -> dict:
    return {"G": tuple(f"G_{d}" for d in self.directions),
            "D": tuple(f"D_{d[1]}" for d in self.directions)}

  def init_state(self, rng) -> base.TrainState:
    images = {s: jnp.zeros((2, *self.example_shape(s))) for s in ("x", "y")}
    keys = jnp.zeros((2, 2), jnp.uint32)
    state_key, net_key = jax.random.split(rng)
    net_keys = iter(jax.random.split(net_key, 8))
    params, spectral = base.empty_parts(), base.empty_parts()
    for d in self.directions:
      src, tgt = images[d[0]], images[d[1]]
      for part, name, inputs in (("G", f"G_{d}", (src, keys)),
                                 ("D", f"D_{d[1]}", (jnp.concatenate([src, tgt], -1),))):
        v = self.module(part, name).init(next(net_keys), *inputs)
        params[part][name], spectral[part][name] = v["params"], v["batch_stats"]
    params["W"], _ = self.bw.init(net_keys, images["x"], images["y"])
    opt_state = {k: self.tx[k].init(params[k]) for k in ("G", "D", "W")}
    return base.TrainState(step=jnp.zeros((), jnp.int32), rng=state_key, params=params,
                           spectral=spectral, opt_state=opt_state)

  def translate(self, params, spectral, images, z, direction: str):
    run = Runner(self, params, spectral, None, train=False)
    return run("G", f"G_{direction}", images, noise_keys(z))

  # --- steps: (state, batch, rng) -> (state, metrics) ---

  def generator_step(self, state, batch, rng, axis_name=None):
    """BCE(D(x, G(x)), 1) + λ L1(G(x), y) per direction."""
    c = self.config

    def loss_fn(params):
      run = Runner(self, params, state.spectral, axis_name, train=True)
      adv = l1 = 0.0
      for k, d in enumerate(self.directions):
        src, tgt = batch[d[0]], batch[d[1]]
        fake = run("G", f"G_{d}", src, sample_keys(jax.random.fold_in(rng, k),
                                                   src.shape[0], axis_name))
        logits = run("D", f"D_{d[1]}", jnp.concatenate([src, fake.astype(src.dtype)], -1))
        adv = adv + losses.batch_mean(losses.bce_per_sample(logits, 1.0), axis_name)
        l1 = l1 + c.l1_weight * losses.batch_mean(l1_per_sample(fake, tgt), axis_name)
      return adv + l1, ({"adv": adv, "l1": l1}, run.spectral)

    state, _, (terms, spectral) = base.update(self.tx, state, ("G",), loss_fn, axis_name)
    return state.replace(spectral=spectral), (base.step_metrics("g", terms),
                                              self.uniform_weights(batch))

  def discriminator_step(self, state, batch, rng, axis_name=None):
    """½ [BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)] per direction."""
    run = Runner(self, state.params, state.spectral, axis_name, train=True)
    fakes = {d: jax.lax.stop_gradient(run("G", f"G_{d}", batch[d[0]], sample_keys(
        jax.random.fold_in(rng, k), batch[d[0]].shape[0], axis_name)))
             for k, d in enumerate(self.directions)}

    def loss_fn(params):
      d_run = Runner(self, params, run.spectral, axis_name, train=True)
      total = 0.0
      for d in self.directions:
        src, name = batch[d[0]], f"D_{d[1]}"
        real = d_run("D", name, jnp.concatenate([src, batch[d[1]]], -1))
        fake = d_run("D", name, jnp.concatenate([src, fakes[d].astype(src.dtype)], -1))
        total = total + 0.5 * (losses.batch_mean(losses.bce_per_sample(real, 1.0), axis_name)
                               + losses.batch_mean(losses.bce_per_sample(fake, 0.0), axis_name))
      return total, d_run.spectral

    state, loss, spectral = base.update(self.tx, state, ("D",), loss_fn, axis_name)
    return state.replace(spectral=spectral), {"d/loss": loss}
