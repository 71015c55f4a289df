"""fer_lib: facial emotion recognition on FER2013, for teaching.

Submodules: ``fer_lib.data`` (loading, synthetic faces, augmentation), ``fer_lib.models`` (attention
modules and the SOTAResEmote family), ``fer_lib.train`` / ``fer_lib.evaluate`` (engine and metrics),
``fer_lib.explain`` (Grad-CAM and attention maps), ``fer_lib.faces`` (emotion on any photo), and the CLI
``python -m fer_lib``.
"""

__version__ = "0.1.0"

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013's canonical label order: label ``i`` is ``EMOTIONS[i]``."""

NUM_CLASSES = len(EMOTIONS)
