"""Learners: gradient-based (MAML family), black-box recurrent, non-parametric, baselines."""

from metagym.learners.anil import ANIL
from metagym.learners.base import Learner, Predictor
from metagym.learners.blackbox import BlackBoxRegressor
from metagym.learners.blackbox_classifier import BlackBoxClassifier
from metagym.learners.in_context import TransformerClassifier, TransformerRegressor
from metagym.learners.maml import MAML, adapted_model
from metagym.learners.maml_plus_plus import MAMLPlusPlus
from metagym.learners.matching import MatchingNetwork
from metagym.learners.oracle import Oracle
from metagym.learners.pretrain import PretrainFineTune
from metagym.learners.pretrain_classifier import PretrainClassifier
from metagym.learners.protomaml import ProtoMAML
from metagym.learners.protonet import PrototypicalNetwork
from metagym.learners.reptile import Reptile
from metagym.learners.soft_nn import SoftNearestNeighbour

__all__ = [
    "ANIL",
    "MAML",
    "MAMLPlusPlus",
    "BlackBoxClassifier",
    "BlackBoxRegressor",
    "Learner",
    "MatchingNetwork",
    "Oracle",
    "Predictor",
    "PretrainClassifier",
    "PretrainFineTune",
    "ProtoMAML",
    "PrototypicalNetwork",
    "Reptile",
    "SoftNearestNeighbour",
    "TransformerClassifier",
    "TransformerRegressor",
    "adapted_model",
]
