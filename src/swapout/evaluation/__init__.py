"""Using a trained network: deterministic and stochastic inference (section 3.1), the error of a split and
Figure 2, adaptive inference, BatchNorm recalibration, uncertainty and calibration under shift.

Library code: it takes a model and images, and imports nothing of configs, runs or training."""
