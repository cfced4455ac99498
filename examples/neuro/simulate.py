"""Synthetic diffusion-weighted subjects: a head phantom simulated with DIPY's tensor model.

Each subject is a folder ``sub-NN/dwi/`` holding ``sub-NN_dwi.nii.gz`` (int16, like a
scanner's), ``sub-NN_dwi.bval`` (one row) and ``sub-NN_dwi.bvec`` (three rows, FSL's
convention). Nothing is downloaded: the gradient directions are DIPY's bundled
``repulsion100`` sphere, the signal is DIPY's diffusion tensor model (its design matrix),
the noise is DIPY's Rician ``add_noise``. A subject is a function of (seed, index) only.

The anatomy is what brain extraction and a tensor fit need to be meaningful: a dark
background, a faint scalp separated from the brain by a dark skull, cortex (bright b0, low
anisotropy), white matter with a left-right callosal band and two superior-inferior
bundles (high anisotropy), and CSF-filled ventricles (brightest b0, fast isotropic
diffusion). Sizes, diffusivities and the noise vary per subject.

A dataset is laid out as OpenNeuro's are: ``dataset_description.json`` (naming this generator
and its seed) beside the ``sub-NN/`` folders, in a folder or under any fsspec URL:

    cd examples && python -m neuro.simulate DEST --subjects 4
    cd examples && python -m neuro.simulate s3://my-bucket/ds-sim/ --subjects 8
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from dipy.core.gradients import gradient_table
from dipy.data import get_sphere
from dipy.reconst.dti import design_matrix, lower_triangular
from dipy.sims.voxel import add_noise

from .pipeline import subject_files

SHAPE = (40, 48, 28)  # voxels of 2.5 mm: a small whole-head field of view
VOXEL_MM = 2.5
B_VALUE = 1000.0
N_B0 = 3
SNR = 25.0  # of the b0 signal of white matter-like tissue (S0 = 1000)
SEED = 20251125
GENERATOR = "spmd examples/neuro/simulate.py"  # dataset_description.json's GeneratedBy name

# S0 (b0 signal, T2-weighted) and eigenvalues (mm^2/s) per tissue.
SCALP = (300.0, (1.0e-3, 1.0e-3, 1.0e-3))
CORTEX = (1100.0, (0.95e-3, 0.8e-3, 0.7e-3))
WHITE = (900.0, (1.3e-3, 0.6e-3, 0.5e-3))
BUNDLE = (850.0, (1.7e-3, 0.35e-3, 0.3e-3))
CSF = (2200.0, (3.0e-3, 3.0e-3, 3.0e-3))


def gradients() -> tuple[np.ndarray, np.ndarray]:
    """(bvals, bvecs as N x 3): N_B0 b=0 volumes, then one per direction of a hemisphere."""
    vertices = get_sphere(name="repulsion100").vertices
    hemi = vertices[(vertices[:, 2] > 1e-9) | ((np.abs(vertices[:, 2]) <= 1e-9) & (vertices[:, 1] > 0))]
    bvecs = np.vstack([np.zeros((N_B0, 3)), hemi])
    bvals = np.concatenate([np.zeros(N_B0), np.full(len(hemi), B_VALUE)])
    return bvals, bvecs


def _frame(direction: np.ndarray) -> np.ndarray:
    """An orthonormal 3 x 3 frame whose first column is direction."""
    e0 = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0, 0]) if abs(e0[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(e0, helper)
    e1 /= np.linalg.norm(e1)
    return np.column_stack([e0, e1, np.cross(e0, e1)])


def _tensor(evals, direction) -> np.ndarray:
    frame = _frame(np.asarray(direction, dtype=float))
    return lower_triangular(frame @ np.diag(evals) @ frame.T)


def phantom(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S0 map, lower-triangular tensors per voxel, true brain mask) of one subject's head."""
    grid = np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in SHAPE], indexing="ij"), -1)
    radii = np.array([15.0, 19.0, 10.5]) * rng.uniform(0.93, 1.05)
    r = np.linalg.norm(grid / radii, axis=-1)  # ellipsoidal radius: 1 at the brain's surface
    x, y, z = (grid / radii).transpose(3, 0, 1, 2)

    s0 = np.zeros(SHAPE)
    tensors = np.zeros(SHAPE + (6,))
    scale = rng.uniform(0.92, 1.08)  # per-subject diffusivity
    spread = rng.uniform(0.85, 1.15)  # per-subject anisotropy of the bundles

    def fill(where, tissue, direction=(1.0, 0, 0), anisotropy=1.0):
        signal, evals = tissue
        evals = np.array(evals) * scale
        mean = evals.mean()
        evals = mean + (evals - mean) * anisotropy
        s0[where] = signal
        tensors[where] = _tensor(evals, direction)

    fill((r >= 1.15) & (r < 1.27), SCALP)
    brain = r < 1.0
    fill(brain, CORTEX)
    fill(r < 0.82, WHITE, direction=(0.3, 1.0, 0.2))
    callosum = (np.abs(z - 0.25) < 0.12) & (np.abs(y) < 0.45) & (np.abs(x) < 0.6)
    fill(callosum, BUNDLE, direction=(1.0, 0, 0), anisotropy=spread)
    for side in (-1, 1):
        tract = (np.hypot(x - side * 0.35, y + 0.1) < 0.12) & (np.abs(z) < 0.7) & (r < 0.82)
        fill(tract, BUNDLE, direction=(0.1 * side, 0.15, 1.0), anisotropy=spread)
    for side in (-1, 1):
        ventricle = np.linalg.norm(np.stack([(x - side * 0.14) / 0.09, (y + 0.05) / 0.35,
                                             (z + 0.05) / 0.16]), axis=0) < 1
        fill(ventricle, CSF)
    return s0, tensors, brain


def simulate_subject(index: int, seed: int = SEED) -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray, np.ndarray]:
    """(image, bvals, bvecs, true brain mask) of subject index; equal arguments, equal data."""
    rng = np.random.default_rng([seed, index])
    bvals, bvecs = gradients()
    s0, tensors, brain = phantom(rng)
    design = design_matrix(gradient_table(bvals, bvecs=bvecs))[:, :6]
    signal = s0[..., None] * np.exp(tensors @ design.T)
    noisy = add_noise(signal, SNR, 1000.0, noise_type="rician", rng=rng)
    data = np.clip(np.round(noisy), 0, np.iinfo(np.int16).max).astype(np.int16)
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    affine[:3, 3] = -(np.array(SHAPE) - 1) / 2 * VOXEL_MM
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    return image, bvals, bvecs, brain


def subject_objects(index: int, seed: int = SEED) -> dict[str, bytes]:
    """Subject index's files as BIDS lays them out: relative path -> bytes (equal arguments,
    equal bytes: the gzip stream has mtime 0, so uploads and versions are content-stable)."""
    import gzip
    import io
    name = f"sub-{index + 1:02d}"
    dwi, bval, bvec = (p.as_posix() for p in subject_files(Path(name)))
    image, bvals, bvecs, _ = simulate_subject(index, seed)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as out:
        out.write(image.to_bytes())
    rows = {}
    for path, array, fmt in ((bval, bvals[None], "%g"), (bvec, bvecs.T, "%.8f")):
        text = io.StringIO()
        np.savetxt(text, array, fmt=fmt)
        rows[path] = text.getvalue().encode()
    return {dwi: packed.getvalue(), **rows}


def description(seed: int = SEED) -> bytes:
    """dataset_description.json of a simulated dataset; names the generator and its seed,
    so a reader can tell the data apart from a real dataset and simulate it again."""
    return json.dumps({"Name": "spmd synthetic diffusion phantom", "BIDSVersion": "1.8.0",
                       "DatasetType": "raw",
                       "GeneratedBy": [{"Name": GENERATOR, "Description": f"seed={seed}"}]},
                      indent=2).encode()


def generated_seed(raw: bytes) -> int | None:
    """The seed a dataset_description.json written by ``description`` names; None otherwise."""
    try:
        for entry in json.loads(raw).get("GeneratedBy", ()):
            if entry.get("Name") == GENERATOR:
                return int(entry["Description"].removeprefix("seed="))
    except (ValueError, KeyError, AttributeError, TypeError):
        return None
    return None


def write_subject(dest: str | Path, index: int, seed: int = SEED) -> Path:
    """Write subject index under dest as sub-NN/dwi/...; returns the subject's folder."""
    for rel, body in subject_objects(index, seed).items():
        path = Path(dest) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return Path(dest) / f"sub-{index + 1:02d}"


def write_subjects(dest: str | Path, n: int, seed: int = SEED) -> list[Path]:
    """Write dataset_description.json and subjects 0..n-1 under dest; returns their folders."""
    Path(dest).mkdir(parents=True, exist_ok=True)
    (Path(dest) / "dataset_description.json").write_bytes(description(seed))
    return [write_subject(dest, i, seed) for i in range(n)]


def dataset_objects(n: int, seed: int = SEED) -> dict[str, bytes]:
    """A whole dataset of n subjects, as a bucket holds it: relative key -> bytes."""
    objects = {"dataset_description.json": description(seed)}
    for index in range(n):
        objects.update(subject_objects(index, seed))
    return objects


def write_dataset(url: str, n: int, seed: int = SEED, **options) -> list[str]:
    """Write the dataset to any fsspec URL or path (``s3://bucket/ds/``; ``options`` are the
    filesystem's, e.g. ``endpoint_url``), one put per file; returns the subjects' folder URLs."""
    import fsspec
    fs, root = fsspec.core.url_to_fs(url, **options)
    root = root.rstrip("/")
    if "file" in ((fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol):
        return [str(folder) for folder in write_subjects(root, n, seed)]
    for rel, body in dataset_objects(n, seed).items():
        fs.pipe_file(f"{root}/{rel}", body)
    return [f"{url.rstrip('/')}/sub-{index + 1:02d}/" for index in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", help="a folder, or a URL such as s3://bucket/ds/ (credentials "
                                         "from the environment, as fsspec finds them)")
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--endpoint-url", help="an S3-compatible service's address")
    args = parser.parse_args()
    options = {"endpoint_url": args.endpoint_url} if args.endpoint_url else {}
    for folder in write_dataset(args.dest, args.subjects, args.seed, **options):
        print(folder)


if __name__ == "__main__":
    main()
