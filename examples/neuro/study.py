"""The DIPY pipeline as a study: a per-subject step, a second per-subject step on the first
one's output files, and a group step over every subject's result.

``prepare`` (step 1) checks the lab's licence file, masks and denoises a subject and writes
the denoised volumes, the mask and the gradients into ``spmd.outputs()``. ``fit_prepared``
(step 2, chained item by item) reads them from ``spmd.upstream_files()`` and fits the tensor.
``group_summary`` (one task, ``spmd.gather``) averages the subjects. Split this way, the
steps compute exactly what ``pipeline.analyse`` computes in one go.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from . import pipeline

LICENSE_VARIABLE = "STUDY_LICENSE"  # as FreeSurfer reads $FS_LICENSE


def licence_digest(text: str) -> str:
    """What a task reports of the licence: a digest, never the licence itself."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare(folder: str | Path) -> dict:
    """Step 1: the licence checked, the brain mask and the denoised volumes into outputs."""
    import spmd
    from dipy.denoise.nlmeans import nlmeans
    from dipy.denoise.noise_estimate import estimate_sigma
    licence = Path(os.environ[LICENSE_VARIABLE]).read_text()
    data, bvals, bvecs = pipeline.load(folder)
    data = np.asarray(data, dtype=np.float32)
    mask = pipeline.brain_mask(data, bvals, bvecs)
    sigma = estimate_sigma(data, N=1)
    denoised = nlmeans(data, sigma, mask=mask, patch_radius=pipeline.PATCH_RADIUS,
                       block_radius=pipeline.BLOCK_RADIUS, rician=True, num_threads=1)
    out = spmd.outputs()
    for name, array in (("denoised", denoised), ("mask", mask), ("bvals", bvals), ("bvecs", bvecs)):
        np.save(out / f"{name}.npy", array)
    return {"subject": Path(folder).name, "licence": licence_digest(licence)}


def fit_prepared(prepared: dict) -> dict:
    """Step 2: the tensor fit on step 1's files of this subject; the subject's summary."""
    import spmd
    files = spmd.upstream_files()
    load = lambda name: np.load(files / f"{name}.npy")  # noqa: E731
    mask = load("mask")
    fa = pipeline.tensor_fa(load("denoised"), load("bvals"), load("bvecs"), mask)
    return pipeline.summarise(mask, fa, subject=prepared["subject"])


def group_summary(summaries: list[dict]) -> dict:
    """The group step: every subject's mean FA, and their mean."""
    values = [s["mean_fa"] for s in summaries]
    return {"subjects": [s["subject"] for s in summaries], "mean_fa": values,
            "group_mean_fa": float(np.mean(values))}
