"""unsuplab: the helper package of the open course *Unsupervised Deep Learning*.

Small, hand-written modules that the chapters and labs import, so that a notebook holds the
lesson and not the plumbing:

========================  ===============================================================
``unsuplab.runtime``      profiles (smoke / cpu / full / auto), the device, seeds
``unsuplab.data``         real data sets, checksummed downloads, the local mirror
``unsuplab.train``        a short training loop with checkpoints, resume and a NaN guard
``unsuplab.metrics``      linear probe, k-NN, clustering accuracy and NMI on frozen features
``unsuplab.viz``          image grids, curves, embeddings, widgets with a static fallback
``unsuplab.checks``       self-checks that compare an exercise with the reference
``unsuplab.labs``         generate the exercise notebooks from the solutions
``unsuplab.bench``        run a notebook under a profile and record its results
``unsuplab.claims``       each lab's headline claims, checked against its measured runs
``unsuplab.cost``         how long a lab takes on this machine, from its counted work
``unsuplab.workloads``    what each lab computes, as the cost model counts it
``unsuplab.wordvectors``  word vectors: nearest neighbours, analogies, similarity benchmarks
``unsuplab.models``       the models of each chapter, one family per file
========================  ===============================================================

Typical first cell of a lab::

    import unsuplab as ul
    rt = ul.setup(profile, seed=0, lab="05_vae")   # prints the profile, the device, the seed and an estimate
"""

from __future__ import annotations

import importlib

from .runtime import Runtime, get_device, resolve_profile, seed_everything, setup

__version__ = "0.1.0"

#: Where the course lives; the Colab install cell and the book's launch buttons use it.
REPO_URL = "https://github.com/unsupervised-deep-learning/course"

#: The git tag of this release. Each release is tagged ``v<version>``, and every lab's install cell
#: installs that tag, so a lab keeps the package it was written for, whatever ``main`` becomes later.
RELEASE_TAG = f"v{__version__}"

_SUBMODULES = ("data", "train", "metrics", "viz", "checks", "labs", "bench", "claims", "cost", "workloads",
               "wordvectors", "models", "runtime")

__all__ = ["Runtime", "setup", "resolve_profile", "get_device", "seed_everything",
           "REPO_URL", "RELEASE_TAG", "__version__", *_SUBMODULES]


def __getattr__(name: str):
    # Submodules load on first use (``ul.data``), so ``import unsuplab`` stays fast.
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'unsuplab' has no attribute {name!r}")
