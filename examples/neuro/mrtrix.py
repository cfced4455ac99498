"""MRtrix3's tensor FA for a subject, and how it is checked against DIPY's.

What MRtrix needs (``dwi2tensor`` then ``tensor2metric -fa``, Debian's mrtrix3 3.0.3):
- FSL gradients: ``-fslgrad BVECS BVALS`` with bvecs as 3 rows (x, y, z) and bvals as 1 row,
  one column per volume. ``simulate.py`` writes them so.
- Every gradient entry finite. DIPY's bundled ``small_64D.bvec`` holds ``nan nan nan`` for
  its b=0 volume; DIPY ignores b=0 directions, but MRtrix puts the NaN into its b-matrix
  and every voxel's fit becomes NaN (the "NaN everywhere" seen before). Writing ``0 0 0``
  for b=0 volumes (``finite_bvecs``) fixes it: on small_64D, FA then agrees with DIPY's
  (median |dFA| 0.002 in the median_otsu mask; max FA 0.912 vs DIPY's 0.909).
- No mask is needed for the fit; FA is compared inside DIPY's median_otsu mask.

The tolerance: DIPY's WLS fit and MRtrix's default fit (weighted, then two reweighting
iterations) differ only in their weights. On the synthetic subjects the median |dFA| in
the mask is about 0.0004 and the 95th percentile about 0.002, while FA's own error from
the simulated noise (noisy vs. noise-free fit) is about 0.02 (median). The bounds below
are 4 to 10 times the observed differences and still well under that noise error, so a
wrong gradient convention, a lost volume or a transposed bvec file fails them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MEDIAN_TOLERANCE = 0.005  # median |FA_mrtrix - FA_dipy| inside the mask
P95_TOLERANCE = 0.02  # its 95th percentile
MEAN_TOLERANCE = 0.005  # |mean FA_mrtrix - mean FA_dipy| inside the mask

# The command line of the command job, one per subject: {dwi}, {bval}, {bvec} are the
# subject's files (data references, staged as local paths). The tensor goes from dwi2tensor
# to tensor2metric through a pipe (MRtrix's "-" image), so only fa.nii.gz is written in the
# working folder, whose files come back with the item's result. When dwi2tensor fails,
# tensor2metric gets no image and exits 1 too, so the item fails with both errors in its log.
COMMAND = ["sh", "-c", "dwi2tensor -quiet -fslgrad {bvec} {bval} {dwi} -"
                       " | tensor2metric -quiet -fa fa.nii.gz -"]
OUTPUTS = ["fa.nii.gz"]


def finite_bvecs(bvec_path: str | Path, dest: str | Path) -> Path:
    """A copy of an FSL bvec file with non-finite entries (b=0 volumes' NaN) set to 0."""
    bvecs = np.loadtxt(bvec_path, ndmin=2)
    if bvecs.shape[0] != 3 and bvecs.shape[1] == 3:
        bvecs = bvecs.T  # N x 3 -> FSL's 3 rows
    np.savetxt(dest, np.nan_to_num(bvecs, nan=0.0, posinf=0.0, neginf=0.0), fmt="%.8f")
    return Path(dest)


def agreement(fa_mrtrix: np.ndarray, fa_dipy: np.ndarray, mask: np.ndarray) -> dict:
    """How MRtrix's FA compares with DIPY's inside mask, and whether it is within tolerance."""
    inside = fa_mrtrix[mask]
    diff = np.abs(inside - fa_dipy[mask])
    stats = {"nan": int(np.isnan(inside).sum()), "median": float(np.nanmedian(diff)),
             "p95": float(np.nanpercentile(diff, 95)),
             "mean_diff": float(abs(np.nanmean(inside) - fa_dipy[mask].mean()))}
    stats["ok"] = (stats["nan"] == 0 and stats["median"] <= MEDIAN_TOLERANCE
                   and stats["p95"] <= P95_TOLERANCE and stats["mean_diff"] <= MEAN_TOLERANCE)
    return stats
