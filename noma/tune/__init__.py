"""noma.tune: populations of NOMA networks on Ray Tune (`noma tune FILE`).

live.LiveTrial (one trial in a live Session, no Ray), trainable.NomaTrainable (the Ray Tune
Trainable around it), runner (the command: search spaces, schedulers, results files), space
(search space syntax), population (the population plot), program (cutting a program into setup,
training loop and the rest). Importing this package imports neither Ray nor the compiler.
"""
