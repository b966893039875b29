"""How many CPU threads torch uses for the model: all the cores it may have on a CPU worker, one on a
GPU worker (its host work is small, and several workers share one host)."""

from __future__ import annotations

import os

import torch


def set_cpu_threads() -> None:
    """Intra-op threads = available cores (capped at 8): more only adds contention on shared hosts.
    An explicit `OMP_NUM_THREADS`/`torch.set_num_threads` by the caller wins."""
    if os.environ.get("OMP_NUM_THREADS"):
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    if torch.get_num_threads() > min(cores, 8):
        torch.set_num_threads(max(1, min(cores, 8)))


def set_host_threads_for_gpu() -> None:
    """With the model on a GPU, torch's host-side work (collating, copies) is small and needs no OpenMP
    team: one intra-op thread. Several extraction workers share a GPU (one per partition), and each
    would otherwise start one spinning thread per core (16 workers × 16 threads on a 16-core host).
    An explicit `OMP_NUM_THREADS` wins."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(1)
