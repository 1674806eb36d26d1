"""Pure PyTorch training code for AudioML: no Django imports anywhere in this package.

The entry point is :func:`training_app.ml.train.train`; what differs between tasks lives in ``tasks/``. ``artifacts``,
``config``, ``data``, ``split``, ``metrics`` and the ``tasks`` modules import no torch at import time, so the web
process can validate jobs and shape predictions without paying for it. Outside Django, import ``audioml`` first (before
torch): it sets ``OMP_WAIT_POLICY`` for the process.
"""

ML_VERSION = "1.0"
