"""The DIPY reference pipeline over N subjects: brain extraction, denoising, tensor fit.

    python examples/dipy_pipeline.py --subjects 4 --backend local
    python examples/dipy_pipeline.py --data s3://BUCKET/ds-sim/ --anon \\
        --outputs 's3://BUCKET2/dti/{subject}/' --backend aws

A folder (the default: a temporary one) that holds no dataset gets ``--subjects`` subjects
simulated with DIPY (``neuro/simulate.py``, nothing is downloaded) as BIDS lays them out:
``dataset_description.json`` and ``sub-NN/dwi/``. A folder that holds one (on Slurm, a path
under the profile's ``shared_paths``, read where it is) or a URL (``s3://...``: the data where
it lives) is read as it is: the client lists its ``sub-*`` folders, nothing more, and each
becomes ``spmd.File(folder, **options)``. The backend's rule says who moves the bytes (the
task on AWS, the local scheduler into a read-only cache, nobody for a shared path).

``neuro.pipeline.process_subject`` runs per subject in a container: median_otsu brain
extraction, non-local means denoising, a weighted least-squares tensor fit; it returns the
mean FA in the brain mask and voxel counts. With ``--outputs DEST`` (a URL or path; fields
``{subject}`` and ``{index}``) ``derive_subject`` also writes the FA map, the brain mask and
the summary as JSON, which the map publishes to each subject's destination.

The same function runs in-process on the client over the same subjects (for a dataset in a
bucket: simulated again from the seed its ``dataset_description.json`` names), and the two
must agree: counts equal, mean FA within 1e-6 relative, and every published derivative equal
to the in-process one (mask equal, FA within 1e-6). The exit status is 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import posixpath
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the neuro package beside this file

import numpy as np  # noqa: E402

import spmd  # noqa: E402
from neuro import pipeline, simulate  # noqa: E402

# The image gets the client's own versions, so container and in-process results agree.
REQUIREMENTS = [f"{name}=={importlib.metadata.version(name)}"
                for name in ("dipy", "nibabel", "numpy", "scipy")]
RELATIVE_TOLERANCE = 1e-6
FA_TOLERANCE = 1e-6  # |FA| difference of a published map (float32) from the in-process one
DEFAULT_SUBJECTS = 4
# fsspec's implementation of each scheme first, then the packages it pins (s3fs: aiobotocore's
# narrow botocore range), all at this machine's versions so pip resolves them without search
SCHEME_PACKAGES = {"s3": ("s3fs", "aiobotocore", "botocore"), "gs": ("gcsfs",), "az": ("adlfs",),
                   "http": ("aiohttp",), "https": ("aiohttp",)}


def knot(backend: str | None = None, vcpus: float = 1, memory: str = "2GiB",
         config: dict | None = None, func=pipeline.process_subject,
         extra_requirements: tuple[str, ...] = ()) -> spmd.Knot:
    """The Knot that maps the pipeline over subject folders (also used by benchmarks/)."""
    return spmd.Knot(func, requirements=REQUIREMENTS + list(extra_requirements), backend=backend,
                     vcpus=vcpus, memory=memory, name="dipy-pipeline", config=config)


def is_url(location: str) -> bool:
    """Whether location is a URL (s3://, https://, ...) rather than a path on this machine."""
    return "://" in location and not location.startswith("file://")


def task_requirements(made: spmd.Knot, locations: list[str]) -> tuple[str, ...]:
    """The fsspec packages tasks need where the backend has them move the data themselves
    (its DataRule says "task", as AWS's does) and its runtime lacks them: pinned to this
    machine's versions. None on local, whose scheduler moves the bytes."""
    from spmd.plugins import task_runtime
    rule = type(made.backend).data_rule
    if "task" not in (rule.inputs, rule.outputs):
        return ()
    have = {r.split("=")[0].split("[")[0] for r in task_runtime(made.settings.backend)[0]}
    wanted: list[str] = []
    for location in filter(is_url, locations):
        packages = SCHEME_PACKAGES.get(location.split("://")[0], ())
        if packages and packages[0] not in have:
            wanted += [name for name in packages if name not in wanted]
    return tuple(f"{n}=={importlib.metadata.version(n)}" for n in wanted)


def list_subjects(data: str, options: dict) -> list[str]:
    """The names of the ``sub-*`` folders directly under data (a URL or a path): one listing."""
    import fsspec
    fs, root = fsspec.core.url_to_fs(data, **options)
    fs.invalidate_cache(root.rstrip("/"))  # a listing, not one remembered from before
    entries = fs.ls(root.rstrip("/"), detail=True)
    names = (posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory")
    return sorted(n for n in names if n.startswith("sub-"))


def subject_location(data: str, name: str) -> str:
    """The folder of subject name under data, as a URL or path ending in "/"."""
    return data.rstrip("/") + "/" + name + "/"


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


def derivative_mismatches(published: Path, local: Path, summary: dict) -> list[str]:
    """Differences between a subject's published derivatives and the in-process ones."""
    import nibabel as nib
    subject = summary["subject"]
    names = pipeline.derivative_names(subject)
    found = sorted(p.name for p in published.iterdir()) if published.is_dir() else []
    if found != sorted(names.values()):
        return [f"{subject}: published {found}, expected {sorted(names.values())}"]
    problems = []
    if json.loads((published / names["summary"]).read_text()) != summary:
        problems.append(f"{subject}: the published summary differs from the result")
    mask = [np.asarray(nib.load(folder / names["mask"]).dataobj) for folder in (published, local)]
    if not np.array_equal(*mask):
        problems.append(f"{subject}: published brain mask != in-process ({(mask[0] != mask[1]).sum()} voxels)")
    fa = [np.asarray(nib.load(folder / names["fa"]).dataobj) for folder in (published, local)]
    if fa[0].shape != fa[1].shape or not np.allclose(fa[0], fa[1], rtol=0, atol=FA_TOLERANCE):
        problems.append(f"{subject}: published FA map != in-process (max |dFA| "
                        f"{np.abs(fa[0] - fa[1]).max() if fa[0].shape == fa[1].shape else 'shape'})")
    return problems


def local_copies(data: str, options: dict, names: list[str], scratch: Path) -> list[Path] | str:
    """Folders on this machine holding the same subjects, for the in-process check: the
    folders themselves for a path; for a URL, simulated again from the seed its
    dataset_description.json names (the check's one read of the data, a few hundred bytes).
    A text saying why not, for a dataset that neuro/simulate.py did not write."""
    if not is_url(data):
        return [Path(subject_location(data, n)) for n in names]
    import fsspec
    fs, root = fsspec.core.url_to_fs(data, **options)
    try:
        seed = simulate.generated_seed(fs.cat_file(root.rstrip("/") + "/dataset_description.json"))
    except FileNotFoundError:
        seed = None
    if seed is None:
        return "its dataset_description.json does not name neuro/simulate.py"
    return [simulate.write_subject(scratch, int(n.removeprefix("sub-")) - 1, seed) for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=None,
                        help=f"subjects to simulate into a folder without a dataset (default "
                             f"{DEFAULT_SUBJECTS}); with a dataset: the first N (default: all)")
    parser.add_argument("--backend", default=None,
                        help="local, aws or a plugin's backend (default: your spmd configuration's)")
    parser.add_argument("--data", help="a BIDS dataset's folder or URL (s3://bucket/prefix/); a "
                                       "folder without one gets simulated subjects (default: a "
                                       "temporary folder)")
    parser.add_argument("--outputs", help="publish each subject's derivatives there: a URL or "
                                          "path with {subject} (or {index}), e.g. "
                                          "s3://lab-derivatives/dti/{subject}/")
    parser.add_argument("--anon", action="store_true", help="read --data without credentials "
                                                            "(a public bucket, as OpenNeuro's)")
    parser.add_argument("--outputs-anon", action="store_true",
                        help="write --outputs without credentials (a bucket anyone may write)")
    parser.add_argument("--endpoint-url", help="an S3-compatible service's address, for both")
    parser.add_argument("--vcpus", type=float, default=1)
    args = parser.parse_args(argv)

    endpoint = {"endpoint_url": args.endpoint_url} if args.endpoint_url else {}
    options = {**endpoint, **({"anon": True} if args.anon else {})} if is_url(args.data or "") else {}
    out_options = {**endpoint, **({"anon": True} if args.outputs_anon else {})} \
        if is_url(args.outputs or "") else {}
    with tempfile.TemporaryDirectory(prefix="spmd-dipy-") as scratch:
        data = args.data or scratch
        if is_url(data) or (Path(data) / "dataset_description.json").exists():
            names = list_subjects(data, options)[:args.subjects]
            print(f"{len(names)} subjects in {data}" + (" (listed, not read)" if is_url(data) else ""))
        else:
            folders = simulate.write_subjects(data, args.subjects or DEFAULT_SUBJECTS)
            names = [f.name for f in folders]
            print(f"{len(names)} subjects simulated in {data}")
        if not names:
            print(f"no sub-* folders in {data}", file=sys.stderr)
            return 2
        refs = [spmd.File(subject_location(data, n), **options) for n in names]

        started = time.perf_counter()
        made = knot(args.backend, vcpus=args.vcpus)
        if args.outputs:
            extra = task_requirements(made, [data, args.outputs])
            made = knot(args.backend, vcpus=args.vcpus, func=pipeline.derive_subject,
                        extra_requirements=extra)
            job = made.map([spmd.Args(ref, subject=n) for ref, n in zip(refs, names)],
                           outputs_to=args.outputs, outputs_options=out_options)
        else:
            extra = task_requirements(made, [data])
            if extra:
                made = knot(args.backend, vcpus=args.vcpus, extra_requirements=extra)
            job = made.map(refs)
        sent = job.uploads
        print(f"job {job.id}: {len(job)} subjects on {job.backend.name}; uploaded "
              f"{sent.uploaded_bytes} of {sent.bytes} bytes ({sent.uploaded_objects} objects); "
              f"{sent.remote_references} read where they live ({sent.remote_bytes} bytes)")
        remote = job.results()
        remote_seconds = time.perf_counter() - started
        for result in remote:
            print(f"  {result['subject']}: mean FA {result['mean_fa']:.4f}, "
                  f"{result['mask_voxels']} brain voxels, {result['wm_voxels']} with FA > {pipeline.WM_FA}")
        if args.outputs:
            for index, name in enumerate(names):
                print(f"  {name}: published {', '.join(sorted(job.output_urls(index).values()))}")

        local_dir = Path(scratch) / "in-process"
        copies = local_copies(data, options, names, local_dir / "data")
        if isinstance(copies, str):
            print(f"{data}: {copies}; no in-process check")
            return 0
        started = time.perf_counter()
        if args.outputs:
            local = []
            for folder in copies:
                (local_dir / folder.name).mkdir(parents=True, exist_ok=True)
                local.append(pipeline.derive_subject(folder, out=local_dir / folder.name))
        else:
            local = [pipeline.process_subject(folder) for folder in copies]
        local_seconds = time.perf_counter() - started
        problems = mismatches(remote, local)
        if args.outputs and not problems:
            for index, summary in enumerate(local):
                published = Path(scratch) / "published" / summary["subject"]
                job.download(index, published)
                problems += derivative_mismatches(published, local_dir / summary["subject"], summary)

    print(f"{job.backend.name}: {remote_seconds:.1f}s for {len(remote)} subjects; "
          f"in-process, one after another: {local_seconds:.1f}s")
    for line in problems:
        print("MISMATCH " + line, file=sys.stderr)
    subjects = f"{len(remote)} subject" + "s" * (len(remote) != 1)
    what = "results and derivatives agree" if args.outputs else "results agree"
    print(f"{what} with the in-process run ({subjects})" if not problems else
          f"{len(problems)} mismatches with the in-process run")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
