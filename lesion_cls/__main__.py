"""``python -m lesion_cls fit|validate|test|predict --config experiments/cls_ce.yaml [--key value ...]``."""

from __future__ import annotations

from pathlib import Path

from common.cli import Link, run_cli
from lesion_cls.callbacks import ClassificationOutputs
from lesion_cls.data import HAM10000DataModule
from lesion_cls.model import LesionClassifier

# computed by the datamodule from the training split, once it is built (predict needs no loss, hence no training
# data): the loss's class weights (data.class_weights), the class frequencies the sampler gives (logit adjustment)
# and those of the data (the decision tau)
_FROM_TRAINING_SPLIT = (
    ("model.loss_weights", HAM10000DataModule.loss_class_weights),
    ("model.class_priors", HAM10000DataModule.training_class_priors),
    ("model.class_frequencies", HAM10000DataModule.training_class_frequencies),
)
LINKS = tuple(
    Link("data", target, compute=compute, on_instantiate=True, subcommands=("fit", "validate", "test"))
    for target, compute in _FROM_TRAINING_SPLIT
)


def main(args: list[str] | None = None) -> Path | None:
    """Entry point of ``python -m lesion_cls`` and the ``lesion-cls`` console script; returns the run dir."""
    return run_cli(
        LesionClassifier, HAM10000DataModule, ClassificationOutputs, LINKS, report_module="lesion_cls.report", args=args
    )


if __name__ == "__main__":
    main()
