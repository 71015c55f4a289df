"""fer_lib: facial emotion recognition on FER2013, for teaching.

>>> import fer_lib
>>> model = fer_lib.pretrained()                  # the trained FER2013 model that ships with fer_lib
>>> from fer_lib.faces import predict_faces
>>> predict_faces(model, "photo.jpg")[0].top_k    # [("happy", 0.93), ...]

Submodules: ``fer_lib.data`` (loading, synthetic faces, augmentation), ``fer_lib.models`` (attention
modules and the SOTAResEmote family), ``fer_lib.train`` / ``fer_lib.evaluate`` (engine and metrics),
``fer_lib.inference`` (loading models, the bundled weights, batched probabilities), ``fer_lib.explain``
(Grad-CAM and attention maps), ``fer_lib.faces`` (emotion on any photo), and the CLI ``python -m fer_lib``.
``pretrained`` and ``load_model`` are imported on first use, so ``import fer_lib`` stays light.
"""

__version__ = "0.1.0"

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013's canonical label order: label ``i`` is ``EMOTIONS[i]``."""

NUM_CLASSES = len(EMOTIONS)

_LAZY = {"pretrained", "load_model"}


def __getattr__(name: str):
    if name in _LAZY:
        from fer_lib import inference  # deferred: keeps `import fer_lib` light (no torch)

        return getattr(inference, name)
    raise AttributeError(f"module 'fer_lib' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
