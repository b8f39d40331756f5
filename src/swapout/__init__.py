"""Swapout (Singh, Hoiem, Forsyth, NeurIPS 2016) for PyTorch.

``Y = Theta1*X + Theta2*F(X)``: every unit of a block randomly reports 0, its skip input X, its block
output F(X), or X + F(X). Dropout, stochastic depth and residual networks are special cases.
"""

from .conversion import convert, find_joins
from .data.shifted import shifted_images
from .evaluation.adaptive import adaptive_predict
from .evaluation.inference import pass_logits, predict, set_inference, stochastic_passes, using_inference
from .evaluation.recalibrate import recalibrate_bn
from .evaluation.shift import evaluate_shift, plot_shift
from .evaluation.uncertainty import (
                                     calibration_metrics,
                                     cross_fit_temperature,
                                     entropy,
                                     fit_temperature,
                                     mutual_information,
                                     ood_metrics,
)
from .evaluation.uncertainty_report import uncertainty_report
from .layers import Dropout, Residual, ResidualDropout, SkipForward, StochasticDepth, Swapout, SwapoutJoin, SwapoutN
from .methods import METHODS, JoinSpec
from .models import create_model, list_models, register_model
from .ops import mask_shape, skipforward, swapout, swapout_sum
from .schedules import Constant, Explicit, Linear, Schedule, parse_schedule

__version__ = "0.1.0"

__all__ = [
    "swapout", "swapout_sum", "skipforward", "mask_shape",
    "Swapout", "SwapoutN", "SwapoutJoin", "Residual", "Dropout", "ResidualDropout", "StochasticDepth",
    "SkipForward", "METHODS", "JoinSpec",
    "Schedule", "Constant", "Linear", "Explicit", "parse_schedule",
    "create_model", "list_models", "register_model",
    "set_inference", "using_inference", "predict", "stochastic_passes", "pass_logits",
    "calibration_metrics", "fit_temperature", "cross_fit_temperature", "entropy", "mutual_information",
    "ood_metrics", "uncertainty_report", "adaptive_predict", "recalibrate_bn", "convert", "find_joins",
    "evaluate_shift", "plot_shift", "shifted_images",
]
