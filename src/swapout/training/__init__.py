"""Training: one run or a pack of runs through one loop, the step, the records a run writes, packed
networks, and sweeps of many runs."""
