"""Task distributions: a common interface (``base``) and one module per domain."""

from metagym.tasks.base import (
    Examples,
    SupervisedTask,
    TaskDistribution,
    UnknownSplitError,
    make_generator,
    stack_tasks,
)
from metagym.tasks.gym import GymTaskDistribution, RLTask
from metagym.tasks.omniglot import OmniglotTasks
from metagym.tasks.sinusoid import SinusoidTasks
from metagym.tasks.trials import TrialTaskDistribution

__all__ = [
    "Examples",
    "GymTaskDistribution",
    "OmniglotTasks",
    "RLTask",
    "SinusoidTasks",
    "SupervisedTask",
    "TaskDistribution",
    "TrialTaskDistribution",
    "UnknownSplitError",
    "make_generator",
    "stack_tasks",
]
