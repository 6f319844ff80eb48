"""3D volume segmentation: left atrium (LA 2018, UA-MT h5 layout) and MSD-style NIfTI volumes."""

TASK = "segmentation"
"""The task name the segmenter declares; its report sections are registered under it (``report.py``)."""


def default_class_names(num_classes: int) -> list[str]:
    """Class names when ``data.class_names`` is not set: ``background, foreground`` (binary) or
    ``background, class_1, class_2, ...``."""
    if num_classes == 2:
        return ["background", "foreground"]
    return ["background", *(f"class_{c}" for c in range(1, num_classes))]
