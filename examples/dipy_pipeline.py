"""The DIPY reference pipeline over N synthetic subjects: brain extraction, denoising, tensor fit.

    python examples/dipy_pipeline.py --subjects 4 --backend local

Each subject is simulated with DIPY (``neuro/simulate.py``, nothing is downloaded) into a
BIDS-like folder ``sub-NN/dwi/``. The folders are passed as data references
(``spmd.File(folder)``): uploaded once by content, each task sees its subject as a local
folder. ``neuro.pipeline.process_subject`` runs per subject in a container: median_otsu
brain extraction, non-local means denoising, a weighted least-squares tensor fit; it returns
the mean FA in the brain mask and voxel counts. The same function runs in-process on the
client, and the two must agree (counts equal, mean FA within 1e-6 relative); the exit status
is 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the neuro package beside this file

import spmd  # noqa: E402
from neuro import pipeline, simulate  # noqa: E402

# The image gets the client's own versions, so container and in-process results agree.
REQUIREMENTS = [f"{name}=={importlib.metadata.version(name)}"
                for name in ("dipy", "nibabel", "numpy", "scipy")]
RELATIVE_TOLERANCE = 1e-6


def knot(backend: str | None = None, vcpus: float = 1, memory: str = "2GiB",
         config: dict | None = None) -> spmd.Knot:
    """The Knot that maps the pipeline over subject folders (also used by benchmarks/neuro.py)."""
    return spmd.Knot(pipeline.process_subject, requirements=REQUIREMENTS, backend=backend,
                     vcpus=vcpus, memory=memory, name="dipy-pipeline", config=config)


def mismatches(remote: list[dict], local: list[dict]) -> list[str]:
    """Lines describing every difference between the container and in-process results."""
    problems = []
    for got, want in zip(remote, local, strict=True):
        for key in ("subject", "mask_voxels", "wm_voxels", "voxels"):
            if got[key] != want[key]:
                problems.append(f"{want['subject']}: {key} {got[key]} != {want[key]} in-process")
        if not math.isclose(got["mean_fa"], want["mean_fa"], rel_tol=RELATIVE_TOLERANCE):
            problems.append(f"{want['subject']}: mean FA {got['mean_fa']!r} != "
                            f"{want['mean_fa']!r} in-process")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--backend", default=None,
                        help="local, aws or a plugin's backend (default: your spmd configuration's)")
    parser.add_argument("--data", type=Path, help="folder for the subjects (default: a temporary one)")
    parser.add_argument("--vcpus", type=float, default=1)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="spmd-dipy-") as scratch:
        root = args.data or Path(scratch)
        folders = simulate.write_subjects(root, args.subjects)
        print(f"{len(folders)} subjects in {root}")

        started = time.perf_counter()
        job = knot(args.backend, vcpus=args.vcpus).map([spmd.File(folder) for folder in folders])
        sent = job.uploads
        print(f"job {job.id}: {len(job)} subjects on {job.backend.name}; uploaded "
              f"{sent.uploaded_bytes} of {sent.bytes} bytes ({sent.uploaded_objects} objects)")
        remote = job.results()
        remote_seconds = time.perf_counter() - started

        started = time.perf_counter()
        local = [pipeline.process_subject(folder) for folder in folders]
        local_seconds = time.perf_counter() - started

    for result in remote:
        print(f"  {result['subject']}: mean FA {result['mean_fa']:.4f}, "
              f"{result['mask_voxels']} brain voxels, {result['wm_voxels']} with FA > {pipeline.WM_FA}")
    print(f"{job.backend.name}: {remote_seconds:.1f}s for {len(remote)} subjects; "
          f"in-process, one after another: {local_seconds:.1f}s")
    problems = mismatches(remote, local)
    for line in problems:
        print("MISMATCH " + line, file=sys.stderr)
    subjects = f"{len(remote)} subject" + "s" * (len(remote) != 1)
    print(f"results agree with the in-process run ({subjects})" if not problems else
          f"{len(problems)} mismatches with the in-process run")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
