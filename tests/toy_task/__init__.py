"""A toy third task, outside the project's packages: proof that a task plugs into ``common/`` unchanged.

Regression of ``y = w·x + noise`` with a linear model. It has what every task has: a module and a datamodule
that satisfy :mod:`common.contracts`, an outputs callback writing ``metrics.json``, and a report module that
registers its sections.
"""

TASK = "toy_regression"
