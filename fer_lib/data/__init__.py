"""FER2013 data: loading (CSV / ICML CSV / Kaggle folders) with a decode cache, synthetic faces, batched
augmentation, batching and the one preprocessing path to model input. See docs/DESIGN.md.

Typical use::

    from fer_lib.data import load_dataset, TensorBatches, Augment, AugmentConfig, preprocess, to_unit, normalize
    data = load_dataset()                     # FER2013 when found, else clearly labelled synthetic faces
    print(data.summary())
    train = data["train"]
    augment = Augment(AugmentConfig())
    for images_u8, labels in TensorBatches(train.images, train.labels, 128, shuffle=True):
        x = normalize(augment(to_unit(images_u8)))   # training: float [B, 1, 48, 48]
        # evaluation: x = preprocess(images_u8)
"""

from .augment import Augment, AugmentConfig, mixup_cutmix
from .auto import QUICK_SIZES, load_dataset
from .batching import TensorBatches, shard_indices
from .dataset import FERData, FERSplit, content_fingerprint, split_by_name
from .labels import EMOTIONS, FER2013_HELP, NUM_CLASSES, SPLITS, FERDataError, fer2013_help, label_from_name
from .loaders import detect_source, load_fer2013
from .synthetic import SYNTHETIC_SOURCE, load_synthetic, make_synthetic_faces
from .transforms import FER_MEAN, FER_STD, normalize, preprocess, to_unit

__all__ = [
    "EMOTIONS",
    "NUM_CLASSES",
    "SPLITS",
    "FER_MEAN",
    "FER_STD",
    "FER2013_HELP",
    "QUICK_SIZES",
    "SYNTHETIC_SOURCE",
    "Augment",
    "AugmentConfig",
    "FERData",
    "FERDataError",
    "FERSplit",
    "TensorBatches",
    "content_fingerprint",
    "detect_source",
    "fer2013_help",
    "label_from_name",
    "load_dataset",
    "load_fer2013",
    "load_synthetic",
    "make_synthetic_faces",
    "mixup_cutmix",
    "normalize",
    "preprocess",
    "shard_indices",
    "split_by_name",
    "to_unit",
]
