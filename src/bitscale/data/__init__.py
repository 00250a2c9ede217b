"""Synthetic regression tasks with fixed seeds: target functions, input distributions, train/test splits."""

from bitscale.data.functions import FUNCTIONS, function_names, make_function
from bitscale.data.inputs import INPUT_DISTS
from bitscale.data.target import TargetFunction
from bitscale.data.task import RegressionTask, make_task

__all__ = [
    "FUNCTIONS",
    "INPUT_DISTS",
    "RegressionTask",
    "TargetFunction",
    "function_names",
    "make_function",
    "make_task",
]
