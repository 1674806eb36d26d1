"""Pure PyTorch training code for AudioML: no Django imports anywhere in this package.

The entry point is :func:`training_app.ml.train.train`. ``artifacts``, ``config``, ``data`` and ``split`` import no torch,
so the web process can validate jobs without paying for it. Outside Django, import ``audioml`` first (before
torch): it sets ``OMP_WAIT_POLICY`` for the process.
"""

ML_VERSION = "1.0"
