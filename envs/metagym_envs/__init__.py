"""Parameterized Gymnasium environments for meta-learning (they do not import metagym)."""
