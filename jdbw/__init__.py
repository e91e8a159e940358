"""jdbw: JD-BW (Bińkowski, Hjelm, Courville) and baselines in JAX/Flax."""

from jdbw.errors import ConfigError, DataUnavailableError

__version__ = "0.1.0"
