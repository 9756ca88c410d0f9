"""Learners: gradient-based (MAML family), black-box recurrent, non-parametric, baselines."""

from metagym.learners.base import Learner, Predictor
from metagym.learners.blackbox import BlackBoxRegressor
from metagym.learners.blackbox_classifier import BlackBoxClassifier
from metagym.learners.maml import MAML, adapted_model
from metagym.learners.matching import MatchingNetwork
from metagym.learners.oracle import Oracle
from metagym.learners.pretrain import PretrainFineTune
from metagym.learners.pretrain_classifier import PretrainClassifier
from metagym.learners.protonet import PrototypicalNetwork
from metagym.learners.soft_nn import SoftNearestNeighbour

__all__ = [
    "MAML",
    "BlackBoxClassifier",
    "BlackBoxRegressor",
    "Learner",
    "MatchingNetwork",
    "Oracle",
    "Predictor",
    "PretrainClassifier",
    "PretrainFineTune",
    "PrototypicalNetwork",
    "SoftNearestNeighbour",
    "adapted_model",
]
