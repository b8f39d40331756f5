"""Many runs on many machines, on Optuna: ``swapout tune`` (a search over keep probabilities) and
``swapout sweep --storage`` (the paper's campaign), whose workers share one study in a database.

The choices below are what the command line offers; they live here, where importing them loads nothing else
(``swapout eval`` builds the same parser and must not load training)."""

SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("median", "halving", "hyperband", "none")
OBJECTIVES = ("deterministic", "stochastic")
