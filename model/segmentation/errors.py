"""Errors of the segmentation package (kept apart so every backend can raise them without import cycles)."""


class SegmentationError(ValueError):
    """The image cannot be segmented as a frontal chest radiograph, or a backend is unavailable; says why."""
