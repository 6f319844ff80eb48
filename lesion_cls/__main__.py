"""``python -m lesion_cls fit|validate|test|predict --config experiments/cls_ce.yaml [--key value ...]``."""

from __future__ import annotations

from pathlib import Path

from common.cli import Link, run_cli
from lesion_cls.callbacks import ClassificationOutputs
from lesion_cls.data import HAM10000DataModule
from lesion_cls.model import LesionClassifier

LINKS = (
    # the loss's class weights follow data.class_weights, computed on the training split (predict needs no loss,
    # hence no training data)
    Link(
        "data",
        "model.loss_weights",
        compute=HAM10000DataModule.loss_class_weights,
        on_instantiate=True,
        subcommands=("fit", "validate", "test"),
    ),
    # logit adjustment's priors: the class frequencies the sampler gives the training images
    Link(
        "data",
        "model.class_priors",
        compute=HAM10000DataModule.training_class_priors,
        on_instantiate=True,
        subcommands=("fit", "validate", "test"),
    ),
)


def main(args: list[str] | None = None) -> Path | None:
    """Entry point of ``python -m lesion_cls`` and the ``lesion-cls`` console script; returns the run dir."""
    return run_cli(
        LesionClassifier, HAM10000DataModule, ClassificationOutputs, LINKS, report_module="lesion_cls.report", args=args
    )


if __name__ == "__main__":
    main()
