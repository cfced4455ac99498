"""Map a numpy function over 24 inputs in local Docker containers, the way a study maps subjects.

Run it with ``scripts/demo.sh`` (which sets up Docker and a base image first), or
``python examples/quickstart.py`` once set up. ``SPMD_PROFILE=aws`` would send the same
call to AWS Batch.
"""
import time

import spmd


def fit_subject(subject: int, n_voxels: int = 50_000) -> dict:
    """A stand-in for a per-subject model fit: a least-squares fit on simulated signal."""
    import numpy as np

    rng = np.random.default_rng(subject)
    design = np.column_stack([np.ones(64), np.linspace(0, 1, 64)])
    signal = design @ np.array([100.0, subject]) + rng.normal(0, 1, (n_voxels, 64))
    coef, *_ = np.linalg.lstsq(design, signal.T, rcond=None)
    return {"subject": subject, "slope": round(float(coef[1].mean()), 2), "numpy": np.__version__}


def main() -> None:
    subjects = list(range(24))
    started = time.time()
    knot = spmd.Knot(fit_subject, requirements=["numpy"], vcpus=1, memory="1GiB")
    job = knot.map(subjects)
    print(f"job {job.id}: {len(job)} subjects submitted")
    for future in spmd.as_completed(job):
        result = future.result()
        print(f"  subject {result['subject']:2d}: slope {result['slope']:6.2f}")
    results = job.results()
    assert [r["subject"] for r in results] == subjects
    containers = {job.provenance(i)["host"] for i in range(len(job))}
    print(f"summary: {len(job)} items, {job.manifest.n_tasks} tasks, {len(containers)} containers, "
          f"numpy {results[0]['numpy']}, wall time {time.time() - started:.1f}s")


if __name__ == "__main__":
    main()
