"""What both tasks share and what knows no task.

Two halves:

* ``common/*.py``: the pieces ONE run uses (the CLI, run dirs, callbacks, optimizers, loaders, loggers, the dataset
  check, folds, statistics, downloads, in-process ensemble members);
* ``common/studies/``: what launches, reads, compares and writes up MANY runs (sweeps, workers, cross-validation,
  reading run dirs, paired comparisons, the report). It imports the run pieces; they never import it
  (``tests/test_house.py`` enforces it).
"""
