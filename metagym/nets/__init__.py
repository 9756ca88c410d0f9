"""Networks shared by the learners."""

from metagym.nets.mlp import mlp

__all__ = ["mlp"]
