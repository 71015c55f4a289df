"""Inference: load a trained model, turn faces into its input, and get batched probabilities.

>>> import fer_lib
>>> model = fer_lib.pretrained()                          # the most accurate bundled model (eval mode, offline)
>>> model = fer_lib.pretrained("ensemble")                # or any bundled name: list_pretrained() lists them
>>> model = fer_lib.load_model("runs/cpu/best.pt")        # or any checkpoint of yours (or a bundled name)
>>> from fer_lib.inference import predict_proba
>>> probs = predict_proba(model, faces_uint8, tta="flip")  # float32 [N, 7], fer_lib.EMOTIONS order

* :mod:`fer_lib.inference.checkpoint`: reading ``.pt`` checkpoints safely (``weights_only=True``).
* :mod:`fer_lib.inference.pretrained`: the bundled models by name (:func:`pretrained`, :func:`list_pretrained`)
  and their file format; :mod:`fer_lib.inference.ensemble`: several models averaged as one.
* :mod:`fer_lib.inference.loading`: :func:`load_model`, from a checkpoint, a ``.safetensors`` file or a bundled
  name (what ``--checkpoint`` means on the command line).
* :mod:`fer_lib.inference.models`: input channels, eval mode, faces to input, logits of any output.
* :mod:`fer_lib.inference.proba`: :func:`batched_logits`, the one batched loop, and :func:`predict_proba`
  with test-time augmentation.

Evaluation, explanation, photo inference, export and the widget use these; nothing here imports the trainer.
"""

from fer_lib.inference.checkpoint import (
    CheckpointError,
    build_named_model,
    load_checkpoint,
    load_state_into,
    load_weights,
)
from fer_lib.inference.ensemble import EnsembleModel
from fer_lib.inference.loading import load_model
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
    COURSE_MODEL,
    ENSEMBLE,
    PRETRAINED_FORMAT,
    WEIGHTS_DIR,
    bundled_names,
    bundled_weights,
    describe_model,
    is_bundled,
    is_bundled_name,
    list_pretrained,
    load_pretrained,
    pretrained,
    read_metadata,
    save_pretrained,
)
from fer_lib.inference.proba import TTA_MODES, batched_logits, predict_proba, tta_views

__all__ = [
    "COURSE_MODEL", "ENSEMBLE", "PRETRAINED_FORMAT", "TTA_MODES", "WEIGHTS_DIR", "batched_logits", "build_named_model",
    "bundled_names", "bundled_weights", "CheckpointError", "describe_model", "EnsembleModel", "eval_mode",
    "is_bundled", "is_bundled_name", "list_pretrained", "load_checkpoint", "load_model", "load_pretrained",
    "load_state_into", "load_weights", "logits_of", "LogitsOnly", "model_device", "model_in_chans",
    "model_num_classes", "predict_proba", "pretrained", "read_metadata", "resolve_device", "save_pretrained",
    "to_model_input", "to_uint8_faces", "tta_views",
]
