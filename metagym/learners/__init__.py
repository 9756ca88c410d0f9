"""Learners: gradient-based (MAML family), black-box recurrent, baselines."""

from metagym.learners.base import Learner, Predictor
from metagym.learners.blackbox import BlackBoxRegressor
from metagym.learners.maml import MAML, adapted_model
from metagym.learners.oracle import Oracle
from metagym.learners.pretrain import PretrainFineTune

__all__ = [
    "MAML",
    "BlackBoxRegressor",
    "Learner",
    "Oracle",
    "Predictor",
    "PretrainFineTune",
    "adapted_model",
]
