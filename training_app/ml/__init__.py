"""Pure PyTorch training code for AudioML: no Django imports anywhere in this package.

The entry point is :func:`training_app.ml.train.train`. ``config``, ``data`` and ``split`` import no torch,
so the web process can validate jobs without paying for it.
"""

import os

ML_VERSION = "1.0"

# Idle OpenMP threads sleep instead of spinning. On a small machine shared with the web server and the
# database, spinning threads that wait for a descheduled sibling made a training step about 10x slower
# (2 cores, measured). libgomp reads this when torch is first imported, so it only helps if this package
# is imported before torch; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
