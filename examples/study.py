"""A study in three maps: two per-subject steps chained item by item, then a group step.

    python examples/study.py --subjects 4 --backend local

Subjects are simulated with DIPY (``neuro/simulate.py``) into a temporary folder. Step 1
(``prepare``) needs the lab's licence file, passed as a secret: every task gets it as a 0600
file named by ``$STUDY_LICENSE``, and it is kept out of everything spmd stores. Step 2
(``fit_prepared``) runs for each subject as soon as its step 1 has ended, on step 1's output
files; the group step gets every subject's result in one task. The client only submits: it
could exit after the three maps, and ``spmd.attach`` would find the results.

The study must agree with the one-go pipeline run in-process (mean FA within 1e-6 relative,
voxel counts equal); the exit status is 1 otherwise. It prints, per subject, the seconds
from step 1's end to step 2's start: what chaining costs in latency.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import spmd  # noqa: E402
from dipy_pipeline import REQUIREMENTS, RELATIVE_TOLERANCE  # noqa: E402
from neuro import pipeline, simulate, study  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--licence", help="the licence file (default: a made-up one)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="spmd-study-"))
    folders = simulate.write_subjects(work / "ds", args.subjects)
    licence = Path(args.licence) if args.licence else work / "license.txt"
    if not args.licence:
        licence.write_text("lab@example.org\n12345\n*CxyzAbCdEf\n")
    secret = spmd.Secret(study.LICENSE_VARIABLE, file=str(licence))

    def knot(func, name):
        return spmd.Knot(func, requirements=REQUIREMENTS, backend=args.backend, name=name,
                         secrets=[secret] if func is study.prepare else ())

    prepared = knot(study.prepare, "prepare").map([spmd.File(f) for f in folders], chunksize=1)
    fitted = knot(study.fit_prepared, "fit").map(prepared)
    group = knot(study.group_summary, "group").map([spmd.gather(fitted)])
    print(f"submitted on {prepared.manifest.backend}: {prepared.id} -> {fitted.id} -> {group.id}",
          flush=True)

    summary = group.results(timeout=3600)[0]
    subjects = fitted.results()
    wanted = study.licence_digest(licence.read_text())
    if any(p["licence"] != wanted for p in prepared.results()):
        print("a task did not see the licence file it was given")
        return 1
    in_process = [pipeline.process_subject(f) for f in folders]
    problems = [f"{want['subject']}: {got} != {want} in-process"
                for got, want in zip(subjects, in_process)
                if {k: got[k] for k in ("mask_voxels", "wm_voxels", "voxels")}
                != {k: want[k] for k in ("mask_voxels", "wm_voxels", "voxels")}
                or not math.isclose(got["mean_fa"], want["mean_fa"], rel_tol=RELATIVE_TOLERANCE)]
    mean = statistics.fmean(s["mean_fa"] for s in in_process)
    if not math.isclose(summary["group_mean_fa"], mean, rel_tol=RELATIVE_TOLERANCE):
        problems.append(f"group mean FA {summary['group_mean_fa']} != {mean} in-process")
    for line in problems:
        print(line)
    if problems:
        return 1
    gaps = [fitted.provenance(i)["started"] - prepared.provenance(i)["ended"]
            for i in range(len(folders))]
    print(f"step 1 end -> step 2 start per subject: median {statistics.median(gaps):.2f} s, "
          f"max {max(gaps):.2f} s")
    print(f"group mean FA {summary['group_mean_fa']:.4f} over {len(folders)} subjects")
    n = len(folders)
    print(f"the study agrees with the in-process pipeline ({n} subject{'s' * (n != 1)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
