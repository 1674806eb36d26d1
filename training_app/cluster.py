"""A qcluster's processes die with the process that started them.

django-q2 runs a cluster as a tree: the `manage.py qcluster` process starts a sentinel, which starts the
pusher, the monitor and the workers. When the main process is killed with SIGKILL, nothing tells the rest:
the sentinel keeps guarding, the pusher keeps pulling tasks and the workers keep training, re-parented to
PID 1 (two clusters then train at once, and jobs run after the app was stopped). On Linux each process the
cluster forks asks the kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), so killing the main
process ends the whole tree from the top down; a worker in the middle of a job records it as failed first
(training_app.tasks.StopOnSigterm). Other systems fall back to the worker's parent check in should_stop().
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
_forking_pid: int | None = None


def is_qcluster_process() -> bool:
    return sys.argv[1:2] == ["qcluster"]


def die_with_parents() -> None:
    """Make every process this one forks from now on (and their forks) get SIGTERM when its parent dies."""
    if not sys.platform.startswith("linux") or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(before=_remember_parent, after_in_child=_follow_parent)


def _remember_parent() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _follow_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return
    if os.getppid() != _forking_pid:  # the parent died between the fork and the prctl call
        os.kill(os.getpid(), signal.SIGTERM)
