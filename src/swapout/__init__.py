"""Swapout (Singh, Hoiem, Forsyth, NeurIPS 2016) for PyTorch.

``Y = Theta1*X + Theta2*F(X)``: every unit of a block randomly reports 0, its skip input X, its block
output F(X), or X + F(X). Dropout, stochastic depth and residual networks are special cases.
"""

from .inference import predict, set_inference, stochastic_passes, using_inference
from .layers import (METHODS, Dropout, Residual, ResidualDropout, SkipForward, StochasticDepth, Swapout,
                     SwapoutJoin, SwapoutN, make_joins)
from .models import create_model, list_models, register_model
from .ops import mask_shape, skipforward, swapout, swapout_sum
from .schedules import Constant, Explicit, Linear, Schedule, parse_schedule

__version__ = "0.1.0"

__all__ = [
    "swapout", "swapout_sum", "skipforward", "mask_shape",
    "Swapout", "SwapoutN", "SwapoutJoin", "Residual", "Dropout", "ResidualDropout", "StochasticDepth",
    "SkipForward", "METHODS", "make_joins",
    "Schedule", "Constant", "Linear", "Explicit", "parse_schedule",
    "create_model", "list_models", "register_model",
    "set_inference", "using_inference", "predict", "stochastic_passes",
]
