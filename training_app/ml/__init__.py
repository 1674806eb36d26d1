"""Pure PyTorch training code for AudioML: no Django imports anywhere in this package.

The entry point is :func:`training_app.ml.train.train`; it is imported lazily by callers so that
importing this package (for example for :mod:`training_app.ml.config`) does not import torch.
"""

ML_VERSION = "1.0"
