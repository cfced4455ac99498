"""The per-subject DIPY pipeline: brain extraction, denoising, tensor fit, mean FA in the mask.

``analyse`` works on arrays; ``process_subject`` reads a subject folder (as written by
``simulate.py``) and calls it. Both return the same summary dictionary, so a map over
arrays and a map over folders (data references) give equal results. ``derive_subject`` is
``process_subject`` that also writes the subject's derivatives (FA map, brain mask, the
summary as JSON) into ``spmd.outputs()``, for a map that publishes them (``outputs_to``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MEDIAN_RADIUS = 2  # median_otsu's filter radius, in voxels
NUMPASS = 1
PATCH_RADIUS = 1  # nlmeans: 3 x 3 x 3 patches compared ...
BLOCK_RADIUS = 2  # ... within a 5 x 5 x 5 search block (seconds per subject, not minutes)
# nlmeans on one thread: its multi-threaded sums differ from run to run in the last bits.
WM_FA = 0.4  # FA above which a masked voxel counts as white-matter-like


def brain_mask(data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray) -> np.ndarray:
    """median_otsu's brain mask from the mean of the b=0 volumes."""
    from dipy.core.gradients import gradient_table
    from dipy.segment.mask import median_otsu
    gtab = gradient_table(bvals, bvecs=bvecs)
    _, mask = median_otsu(data, vol_idx=np.flatnonzero(gtab.b0s_mask),
                          median_radius=MEDIAN_RADIUS, numpass=NUMPASS)
    return mask


def tensor_fa(data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray,
              mask: np.ndarray) -> np.ndarray:
    """FA of DIPY's weighted least-squares tensor fit, zero outside mask."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel
    fit = TensorModel(gradient_table(bvals, bvecs=bvecs), fit_method="WLS").fit(data, mask=mask)
    return np.nan_to_num(fit.fa)


def fit(data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(brain mask, FA): median_otsu mask, non-local means denoising inside it, tensor fit."""
    from dipy.denoise.nlmeans import nlmeans
    from dipy.denoise.noise_estimate import estimate_sigma
    data = np.asarray(data, dtype=np.float32)
    mask = brain_mask(data, bvals, bvecs)
    sigma = estimate_sigma(data, N=1)  # one receive channel: Rician noise
    denoised = nlmeans(data, sigma, mask=mask, patch_radius=PATCH_RADIUS,
                       block_radius=BLOCK_RADIUS, rician=True, num_threads=1)
    return mask, tensor_fa(denoised, bvals, bvecs, mask)


def summarise(mask: np.ndarray, fa: np.ndarray, subject: str = "") -> dict:
    """Mean FA in the mask and voxel counts."""
    inside = fa[mask]
    return {"subject": subject, "mean_fa": float(inside.mean()), "mask_voxels": int(mask.sum()),
            "wm_voxels": int((inside > WM_FA).sum()), "voxels": int(mask.size)}


def analyse(data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, subject: str = "") -> dict:
    """median_otsu mask, non-local means denoising inside it, tensor fit: mean FA and voxel counts."""
    return summarise(*fit(data, bvals, bvecs), subject=subject)


def subject_files(folder: str | Path) -> tuple[Path, Path, Path]:
    """(dwi, bval, bvec) paths of the subject in folder (BIDS-like: sub-NN/dwi/sub-NN_dwi.*)."""
    folder = Path(folder)
    dwi = folder / "dwi"
    return (dwi / f"{folder.name}_dwi.nii.gz", dwi / f"{folder.name}_dwi.bval",
            dwi / f"{folder.name}_dwi.bvec")


def load(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, bvals, bvecs as N x 3) of the subject in folder."""
    image, bvals, bvecs = load_image(folder)
    return np.asarray(image.dataobj), bvals, bvecs


def load_image(folder: str | Path):
    """(nibabel image, bvals, bvecs as N x 3) of the subject in folder."""
    import nibabel as nib
    from dipy.io import read_bvals_bvecs
    dwi, bval, bvec = subject_files(folder)
    bvals, bvecs = read_bvals_bvecs(str(bval), str(bvec))
    return nib.load(dwi), bvals, bvecs


def process_subject(folder: str | Path) -> dict:
    """The pipeline over one subject folder (sub-NN/dwi/...)."""
    data, bvals, bvecs = load(folder)
    return analyse(data, bvals, bvecs, subject=Path(folder).name)


def derivative_names(subject: str) -> dict[str, str]:
    """The derivative files of a subject, BIDS-derivatives style: kind -> file name."""
    return {"fa": f"{subject}_model-DTI_desc-WLS_FA.nii.gz",
            "mask": f"{subject}_desc-brain_mask.nii.gz",
            "summary": f"{subject}_model-DTI_summary.json"}


def derive_subject(folder: str | Path, subject: str | None = None,
                   out: str | Path | None = None) -> dict:
    """``process_subject``, writing the FA map (float32), the brain mask (uint8) and the summary
    (JSON) into out (default: ``spmd.outputs()``, which a map publishes with ``outputs_to``).
    ``subject`` only names the item for ``outputs_to``'s ``{subject}``; the folder's name wins."""
    import json

    import nibabel as nib
    image, bvals, bvecs = load_image(folder)
    mask, fa = fit(np.asarray(image.dataobj), bvals, bvecs)
    summary = summarise(mask, fa, subject=Path(folder).name)
    if out is None:
        import spmd
        out = spmd.outputs()
    names = derivative_names(summary["subject"])
    for kind, array in (("fa", fa.astype(np.float32)), ("mask", mask.astype(np.uint8))):
        nib.save(nib.Nifti1Image(array, image.affine), str(Path(out) / names[kind]))
    (Path(out) / names["summary"]).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
