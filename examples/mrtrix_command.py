"""MRtrix3's tensor FA over N synthetic subjects as a command job, checked against DIPY's FA.

    python examples/mrtrix_command.py --subjects 2 --backend local

Per subject, one command line runs ``dwi2tensor`` then ``tensor2metric -fa``
(``neuro.mrtrix.COMMAND``) on the subject's NIfTI, bvals and bvecs, passed as data
references. The bvecs are first rewritten on the client with ``finite_bvecs`` (MRtrix turns a
b=0 volume's NaN direction into NaN everywhere). The FA map comes back as a file
(``job.download``) and is compared with DIPY's FA on the same data, computed in-process,
inside DIPY's median_otsu brain mask (tolerances and why: ``neuro/mrtrix.py``). The exit
status is 1 when a subject is outside them.

The image: ``Knot(command, system_packages=["mrtrix3"])`` installs Debian's mrtrix3 on top of
spmd's base image. We chose it over ``Command(..., image=...)`` with your own Dockerfile
(``FROM spmd/base:python3.11`` + ``RUN apt-get install -y mrtrix3``) because it is one
argument instead of a Dockerfile and a build step, it is cached by content like the rest of
the task image (the ~1 minute install happens once), it uses your apt mirror (or
``debian_mirror``), and the same image runs on every backend with images (pushed to ECR on
AWS). Use ``image=`` for a tool Debian does not package (FreeSurfer, a lab's own build).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the neuro package beside this file

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

import spmd  # noqa: E402
from neuro import mrtrix, pipeline, simulate  # noqa: E402


def knot(backend: str | None = None) -> spmd.Knot:
    """dwi2tensor + tensor2metric per item, in the task image with Debian's mrtrix3."""
    command = spmd.Command(mrtrix.COMMAND, outputs=mrtrix.OUTPUTS)
    return spmd.Knot(command, system_packages=["mrtrix3"], backend=backend, vcpus=1,
                     memory="1GiB", name="mrtrix-fa")


def items_for(folders: list[Path], scratch: Path) -> list[dict]:
    """One item per subject: its files as data references, with MRtrix-ready bvecs."""
    items = []
    for folder in folders:
        dwi, bval, bvec = pipeline.subject_files(folder)
        bvec = mrtrix.finite_bvecs(bvec, scratch / bvec.name)
        items.append({"dwi": spmd.File(dwi), "bval": spmd.File(bval), "bvec": spmd.File(bvec)})
    return items


def dipy_fa(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(FA, brain mask) of DIPY's fit on the subject's raw data, in-process."""
    data, bvals, bvecs = pipeline.load(folder)
    data = np.asarray(data, dtype=np.float32)
    mask = pipeline.brain_mask(data, bvals, bvecs)
    return pipeline.tensor_fa(data, bvals, bvecs, mask), mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--backend", default=None,
                        help="local, aws or a plugin's backend (default: your spmd configuration's)")
    parser.add_argument("--data", type=Path, help="folder for the subjects (default: a temporary one)")
    args = parser.parse_args(argv)

    failed = 0
    with tempfile.TemporaryDirectory(prefix="spmd-mrtrix-") as scratch:
        scratch = Path(scratch)
        root = args.data or scratch / "subjects"
        folders = simulate.write_subjects(root, args.subjects)
        (scratch / "bvecs").mkdir()
        started = time.perf_counter()
        job = knot(args.backend).map(items_for(folders, scratch / "bvecs"))
        print(f"job {job.id}: {len(job)} subjects on {job.backend.name}")
        results = job.results()
        print(f"{job.backend.name}: {time.perf_counter() - started:.1f}s for {len(results)} subjects")
        for i, (folder, result) in enumerate(zip(folders, results)):
            [fa_file] = job.download(i, scratch / "fa" / folder.name)
            fa_mrtrix = np.asarray(nib.load(fa_file).dataobj, dtype=np.float64)
            fa_dipy, mask = dipy_fa(folder)
            stats = mrtrix.agreement(fa_mrtrix, fa_dipy, mask)
            failed += not stats["ok"]
            print(f"  {folder.name}: exit {result.exit_code}, {fa_file.name} downloaded "
                  f"({fa_file.stat().st_size} bytes)")
            print(f"  {folder.name}: |FA_mrtrix - FA_dipy| in {int(mask.sum())} brain voxels: "
                  f"median {stats['median']:.4f} (<= {mrtrix.MEDIAN_TOLERANCE}), "
                  f"95th percentile {stats['p95']:.4f} (<= {mrtrix.P95_TOLERANCE}), "
                  f"mean FA differs by {stats['mean_diff']:.4f} (<= {mrtrix.MEAN_TOLERANCE}), "
                  f"NaN {stats['nan']}: {'ok' if stats['ok'] else 'OUT OF TOLERANCE'}")
    subjects = f"{len(folders)} subject" + "s" * (len(folders) != 1)
    print(f"MRtrix3 agrees with DIPY ({subjects})" if not failed
          else f"{failed} subjects out of tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
