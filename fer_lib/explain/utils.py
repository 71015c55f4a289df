"""Moved to :mod:`fer_lib.inference.models`; these names stay importable from here for existing code."""

from fer_lib.inference.models import (  # noqa: F401
    LogitsOnly,
    eval_mode,
    logits_of,
    model_device,
    model_in_chans,
    model_num_classes,
    to_model_input,
    to_uint8_faces,
)
