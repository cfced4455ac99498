"""What the tests of the DIPY example on data where it lives share (local and AWS): the
simulated dataset put in a bucket, the client's upload line read back, and the derivatives
checked in the destination bucket independently of the example's own check."""
from __future__ import annotations

import gzip
import json
import math
import re
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WM_FA = 0.4  # neuro.pipeline.WM_FA: the summary's wm_voxels threshold


def simulate_module():
    """examples/neuro/simulate.py, imported from its folder."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from neuro import simulate
    finally:
        sys.path.remove(str(EXAMPLES))
    return simulate


def put_dataset(bucket, prefix: str, n: int) -> dict[str, bytes]:
    """The simulated dataset of n subjects under prefix in bucket (public-read objects, as
    OpenNeuro's); returns its objects by relative key."""
    objects = simulate_module().dataset_objects(n)
    for rel, body in objects.items():
        bucket.put(prefix + rel, body)
    return objects


def uploads(stdout: str) -> tuple[int, int, int, int, int]:
    """(uploaded bytes, referenced bytes, objects put, remote references, remote bytes) as the
    example prints ``job.uploads``."""
    found = re.search(r"uploaded (\d+) of (\d+) bytes \((\d+) objects\); (\d+) read where they "
                      r"live \((\d+) bytes\)", stdout)
    assert found, stdout
    return tuple(map(int, found.groups()))


def subject_bytes(objects: dict[str, bytes], n: int) -> int:
    """The bytes of the first n subjects' folders in a dataset's objects."""
    prefixes = tuple(f"sub-{i + 1:02d}/" for i in range(n))
    return sum(len(body) for key, body in objects.items() if key.startswith(prefixes))


def check_derivatives(out_bucket, prefix: str, stdout: str, n: int) -> None:
    """The derivatives under prefix in out_bucket are each subject's: exactly the files the
    pipeline names, a summary equal to the result printed, and FA and mask maps from which
    that summary follows."""
    import nibabel as nib
    import numpy as np
    printed = dict(re.findall(r"^\s+(sub-\d+): mean FA ([0-9.]+),", stdout, re.M))
    names = [f"sub-{i + 1:02d}" for i in range(n)]
    assert sorted(printed) == names, stdout
    files = {s: {"fa": f"{s}_model-DTI_desc-WLS_FA.nii.gz", "mask": f"{s}_desc-brain_mask.nii.gz",
                 "summary": f"{s}_model-DTI_summary.json"} for s in names}
    # nothing else: no write probe, no partial object, no other subject
    assert out_bucket.keys(prefix) == sorted(f"{prefix}{s}/{f}" for s in names for f in files[s].values())
    for s in names:
        summary = json.loads(out_bucket.get(f"{prefix}{s}/{files[s]['summary']}"))
        assert summary["subject"] == s and f"{summary['mean_fa']:.4f}" == printed[s]
        fa, mask = (np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(
            out_bucket.get(f"{prefix}{s}/{files[s][kind]}"))).dataobj) for kind in ("fa", "mask"))
        mask = mask.astype(bool)
        assert fa.shape == mask.shape and mask.size == summary["voxels"]
        assert int(mask.sum()) == summary["mask_voxels"] > 0
        assert math.isclose(float(fa[mask].mean()), summary["mean_fa"], rel_tol=1e-6)
        assert int((fa[mask] > WM_FA).sum()) == summary["wm_voxels"]
