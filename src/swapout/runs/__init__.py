"""What defines and holds a run, shared by training it and evaluating it: the config and the presets of
the paper's rows, the model a config builds, run directories and checkpoints, devices and processes,
and ``swapout eval`` and ``swapout report`` on run directories. Imports nothing of training."""
