"""metagym: a meta-learning gym."""

__version__ = "0.1.0"
