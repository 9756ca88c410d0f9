"""metagym: a meta-learning gym."""

import metagym_envs  # noqa: F401  (registers the metagym/* Gymnasium environments)

__version__ = "0.1.0"
