"""MRtrix3's tensor FA over N synthetic subjects, checked against DIPY's FA on the same data.

    python examples/mrtrix_command.py --subjects 2 --backend local

Per subject, a task runs ``dwi2tensor`` then ``tensor2metric -fa`` (Debian's ``mrtrix3``,
installed in the task image with ``system_packages``) and returns the FA map as a NIfTI
file. The client computes DIPY's FA on the same data in-process and compares the two
inside DIPY's median_otsu brain mask (tolerances and why: ``neuro/mrtrix.py``). The exit
status is 1 when a subject is outside them.
"""
from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the neuro package beside this file

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

import spmd  # noqa: E402
from neuro import mrtrix, pipeline, simulate  # noqa: E402


def items_for(folders: list[Path], scratch: Path) -> list[tuple[bytes, bytes, bytes]]:
    """One item per subject. Today: the files' bytes, pickled into the job's input.

    With command jobs and data references this becomes one spmd.Command over
    ``{"dwi": spmd.File(dwi), "bval": spmd.File(bval), "bvec": spmd.File(bvec)}`` per subject,
    with ``mrtrix.COMMAND`` as its command line (see the report / README).
    """
    items = []
    for folder in folders:
        dwi, bval, bvec = pipeline.subject_files(folder)
        bvec = mrtrix.finite_bvecs(bvec, scratch / f"{folder.name}.bvec")
        items.append((dwi.read_bytes(), bval.read_bytes(), bvec.read_bytes()))
    return items


def fa_image(result: dict) -> np.ndarray:
    """The FA array of a task's result (the fa.nii.gz bytes)."""
    raw = gzip.decompress(result["fa"])
    return np.asarray(nib.Nifti1Image.from_bytes(raw).dataobj, dtype=np.float64)


def dipy_fa(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(FA, brain mask) of DIPY's fit on the subject's raw data, in-process."""
    data, bvals, bvecs = pipeline.load(folder)
    data = np.asarray(data, dtype=np.float32)
    mask = pipeline.brain_mask(data, bvals, bvecs)
    return pipeline.tensor_fa(data, bvals, bvecs, mask), mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--backend", default="local", help="local, aws or a plugin's backend")
    parser.add_argument("--data", type=Path, help="folder for the subjects (default: a temporary one)")
    args = parser.parse_args(argv)

    failed = 0
    with tempfile.TemporaryDirectory(prefix="spmd-mrtrix-") as scratch:
        root = args.data or Path(scratch)
        folders = simulate.write_subjects(root, args.subjects)
        knot = spmd.Knot(mrtrix.run_fa, system_packages=["mrtrix3"], backend=args.backend,
                         vcpus=1, memory="1GiB", name="mrtrix-fa")
        started = time.perf_counter()
        job = knot.map(items_for(folders, Path(scratch)), starmap=True)
        print(f"job {job.id}: {len(job)} subjects on {args.backend}")
        results = job.results()
        print(f"{args.backend}: {time.perf_counter() - started:.1f}s for {len(results)} subjects")
        for folder, result in zip(folders, results):
            fa_dipy, mask = dipy_fa(folder)
            stats = mrtrix.agreement(fa_image(result), fa_dipy, mask)
            failed += not stats["ok"]
            print(f"  {folder.name}: |FA_mrtrix - FA_dipy| in {int(mask.sum())} brain voxels: "
                  f"median {stats['median']:.4f} (<= {mrtrix.MEDIAN_TOLERANCE}), "
                  f"95th percentile {stats['p95']:.4f} (<= {mrtrix.P95_TOLERANCE}), "
                  f"mean FA differs by {stats['mean_diff']:.4f} (<= {mrtrix.MEAN_TOLERANCE}), "
                  f"NaN {stats['nan']}: {'ok' if stats['ok'] else 'OUT OF TOLERANCE'}")
    print("MRtrix3 agrees with DIPY" if not failed else f"{failed} subjects out of tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
