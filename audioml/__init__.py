"""AudioML's project package: settings, URLs, the one NinjaAPI and what every app shares.

Every process imports this package before any app can load torch (manage.py, gunicorn, the qcluster workers,
pytest-django), so process-wide settings for torch live here, once.
"""

import os

# Idle OpenMP threads sleep instead of spinning. On a small machine shared with the web server and the
# database, spinning threads that wait for a descheduled sibling made a training step about 10x slower and
# resampling a one-second upload 55 ms instead of 1 ms (2 cores, measured). libgomp reads this when torch is
# first imported; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
