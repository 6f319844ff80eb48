"""``python -m lesion_cls fit|validate|test|predict --config experiments/cls_ce.yaml [--key value ...]``."""

from __future__ import annotations

from operator import attrgetter
from pathlib import Path

from common.entry import run_cli
from common.run_options import Link
from lesion_cls.callbacks import ClassificationOutputs
from lesion_cls.data import HAM10000DataModule
from lesion_cls.model import LesionClassifier

# computed by the datamodule from the training split's labels once it is built, after the CLI's dataset check
# (predict needs no loss, hence no training data): the loss's class weights (data.class_weights), the class
# frequencies the sampler gives (logit adjustment) and those of the data (the decision tau)
_FROM_TRAINING_SPLIT = {
    "model.loss_weights": "loss_weights",
    "model.class_priors": "priors",
    "model.class_frequencies": "frequencies",
}
_LABELLED = ("fit", "validate", "test")
# the class list comes from the data too (predict takes it from the checkpoint, with the weights)
LINKS = (
    Link("data", "model.class_names", compute=attrgetter("class_names"), on_instantiate=True, subcommands=_LABELLED),
    *(
        Link(
            "data",
            target,
            compute=attrgetter(f"training_class_statistics.{statistic}"),
            on_instantiate=True,
            subcommands=_LABELLED,
        )
        for target, statistic in _FROM_TRAINING_SPLIT.items()
    ),
)


def main(args: list[str] | None = None) -> Path | None:
    """Entry point of ``python -m lesion_cls``; returns the run dir (``None`` when nothing ran, e.g. ``--help``)."""
    return run_cli(
        LesionClassifier, HAM10000DataModule, ClassificationOutputs, LINKS, report_module="lesion_cls.report", args=args
    )


def cli() -> None:
    """The ``lesion-cls`` console script: :func:`main` with exit status 0 (a console script exits with what its
    function returns, and a run dir is not a status)."""
    main()


if __name__ == "__main__":
    main()
