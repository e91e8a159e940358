"""Networks, as flax.linen modules with pure `init` / `apply`.

- `layers`: convolutions whose implementation is a choice (XLA or im2col) and dense.
- `blocks`: spectral-norm layers, norms, `ConvBlock`, the one `ResBlock` (the paper's
  pre-activation layout and MUNIT's), generator noise, `init` / `apply`.
- `jd`: the paper's networks (Appendix B) and their small CPU variants; `munit`: MUNIT's;
  `cyclegan`: CycleGAN's (ResNet generator, PatchGAN) and DistanceGAN's MNIST-SVHN ones;
  `pix2pix`: pix2pix's U-Net (its PatchGAN is CycleGAN's with batch norm); `dtn`: the
  semantic translators' (DTN, XGAN) encoders and decoders.

The names below are the ones methods use: `nets.init(nets.TinyGenerator(), rng, x, z)`.
"""

from jdbw.nets import balagan, blocks, cyclegan, dtn, jd, layers, munit, pix2pix
from jdbw.nets.blocks import (SPECTRAL, ConvBlock, ResBlock, SNLayer, apply, conv,
                              conv_transpose, dense, init, instance_norm, layer_norm,
                              sample_noise, split_variables, upsample2x, with_tiled_noise)
from jdbw.nets.jd import (AffineMap, DCGANCritic, Generator, GeneratorHiRes, GeneratorMNIST,
                          GeneratorSVHN, JointDiscriminator, JointDiscriminator128,
                          MarginalDiscriminator, MarginalDiscriminator128, MLPCritic,
                          MLPGenerator, MLPJointDiscriminator, MLPWeightNet, TinyCritic,
                          TinyGenerator, TinyGeneratorHiRes, TinyJointDiscriminator, WeightNet,
                          WeightNet128)
