"""Inference: load a trained model, turn faces into its input, and get batched probabilities.

>>> import fer_lib
>>> model = fer_lib.pretrained()                          # the bundled FER2013 model (eval mode, offline)
>>> model = fer_lib.load_model("runs/cpu/best.pt")        # or any checkpoint of yours
>>> from fer_lib.inference import predict_proba
>>> probs = predict_proba(model, faces_uint8, tta="flip")  # float32 [N, 7], fer_lib.EMOTIONS order

* :mod:`fer_lib.inference.checkpoint`: reading ``.pt`` checkpoints safely (``weights_only=True``) and
  :func:`load_model`, which also reads ``.safetensors`` weights and, given no path, the bundled model.
* :mod:`fer_lib.inference.pretrained`: the bundled weights (:func:`pretrained`) and their file format.
* :mod:`fer_lib.inference.models`: input channels, eval mode, faces to input, logits of any output.
* :mod:`fer_lib.inference.proba`: :func:`batched_logits`, the one batched loop, and :func:`predict_proba`
  with test-time augmentation.

Evaluation, explanation, photo inference, export and the widget use these; nothing here imports the trainer.
"""

from fer_lib.inference.checkpoint import (
    CheckpointError,
    build_named_model,
    load_checkpoint,
    load_model,
    load_state_into,
    load_weights,
)
from fer_lib.inference.models import (
    LogitsOnly,
    eval_mode,
    logits_of,
    model_device,
    model_in_chans,
    model_num_classes,
    resolve_device,
    to_model_input,
    to_uint8_faces,
)
from fer_lib.inference.pretrained import (
    PRETRAINED_FORMAT,
    WEIGHTS_DIR,
    bundled_weights,
    describe_model,
    load_pretrained,
    pretrained,
    read_metadata,
    save_pretrained,
)
from fer_lib.inference.proba import TTA_MODES, batched_logits, predict_proba, tta_views

__all__ = [
    "PRETRAINED_FORMAT", "TTA_MODES", "WEIGHTS_DIR", "batched_logits", "build_named_model", "bundled_weights",
    "CheckpointError", "describe_model", "eval_mode", "load_checkpoint", "load_model", "load_pretrained",
    "load_state_into", "load_weights", "logits_of", "LogitsOnly", "model_device", "model_in_chans",
    "model_num_classes", "predict_proba", "pretrained", "read_metadata", "resolve_device", "save_pretrained",
    "to_model_input", "to_uint8_faces", "tta_views",
]
