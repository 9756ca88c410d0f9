"""Networks shared by the learners."""

from metagym.nets.conv4 import conv4
from metagym.nets.mlp import mlp

__all__ = ["conv4", "mlp"]
