"""What a GPU machine needs to run this project offline: the wheels its image lacks, and the project itself.

    python bench/gpu_wheelhouse.py missing                   # the packages the GPU image lacks (names and the versions tested here)
    python bench/gpu_wheelhouse.py download --out .whl       # here (online): exactly those wheels, for CPython 3.12 manylinux x86-64
    python bench/gpu_wheelhouse.py install-project --target DIR   # there (offline): particle_nas.* importable from DIR

The GPU machines this project borrows (docs/gpu.md) run Python 3.12 with a CUDA build of torch
and the packages of ``GPU_IMAGE``, and reach no package index. ``missing`` walks the project's
dependencies (pyproject.toml) through the metadata of the packages installed here, stops at
what the image has, and pins each missing one to the version installed here (the tested one).
``download`` fetches those as binary wheels for the GPU machine's Python and platform; a
package published only as a source archive (fvcore, iopath: pure Python) is built into a
``py3-none-any`` wheel here with ``pip wheel``. The bundle must stay under ``BUNDLE_LIMIT``
(what travels to the machine). ``install-project`` copies the packages by pyproject.toml's
``package-dir`` mapping (``particle_nas.space`` is ``space/``, ...): ``PYTHONPATH=.`` cannot
import them, and building the project there would need a setuptools the image may not have.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE_LIMIT = 64 * 2**20  # bytes: the working tree and what it carries travel to the GPU machine within 64 MiB
# The GPU image's Python packages (the device tool's KINDS.md, "Python packages already there", read on 2026-11-17).
GPU_IMAGE = frozenset(
    """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi charset-normalizer chex
    click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax
    e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore
    httpx huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2
    joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib
    mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy
    numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
    nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
    onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
    patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
    pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning
    pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
    setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
    threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers
    treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp""".split()
)
# The GPU machine's interpreter, for environment markers and wheel tags.
TARGET = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "extra": "",
}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def canonical(name: str) -> str:
    """A distribution name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The ``[project] dependencies`` of pyproject.toml (no extras: the GPU run needs none but onnx, which the image has)."""
    import tomllib

    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def missing(requirements: list[str], *, present: frozenset[str] = GPU_IMAGE) -> dict[str, str]:
    """{name: version installed here} of every package the requirements need, directly or not, that ``present`` lacks.

    Walks Requires-Dist of the packages installed here (markers evaluated for ``TARGET``, extras left
    out); a package ``present`` has ends its branch. A needed package not installed here is a ValueError.
    """
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    queue = [Requirement(r) for r in requirements]
    while queue:
        requirement = queue.pop(0)
        if requirement.marker is not None and not requirement.marker.evaluate(TARGET):
            continue
        name = canonical(requirement.name)
        if name in present or name in found:
            continue
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise ValueError(f"{name} must be installed here to pin its version (pip install -e '.[test]'), but it is not.") from None
        found[name] = distribution.version
        queue += [Requirement(r) for r in distribution.requires or ()]
    return dict(sorted(found.items()))


def download(packages: dict[str, str], out: Path) -> list[Path]:
    """The wheels of ``packages`` in ``out`` for the GPU machine: binary wheels, else a pure-Python wheel built here from the source archive."""
    out.mkdir(parents=True, exist_ok=True)
    for name, version in packages.items():
        pin = f"{name}=={version}"
        tags = [a for p in PLATFORMS for a in ("--platform", p)]
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", TARGET["python_version"], "--implementation", "cp", *tags, "-d", str(out), pin],
            capture_output=True,
            text=True,
        )
        if fetched.returncode != 0:  # published only as a source archive: build its (pure-Python) wheel here
            print(f"{pin}: no wheel on the index; building one with pip wheel", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), pin], check=True)
    wheels = sorted(out.glob("*.whl"))
    check_bundle(wheels, packages)
    return wheels


def check_bundle(wheels: list[Path], packages: dict[str, str]) -> None:
    """One wheel per package, each usable by CPython 3.12 on x86-64 Linux, all together under BUNDLE_LIMIT; else a ValueError."""
    names = sorted(canonical(w.name.split("-")[0]) for w in wheels)
    if names != sorted(packages):
        raise ValueError(f"the wheelhouse must hold one wheel per missing package {sorted(packages)}, but it holds {names}; empty it and download again.")
    for wheel in wheels:
        python, abi, platform = wheel.stem.split("-")[-3:]
        if not (python in ("py3", "py2.py3", "cp312") and (platform == "any" or "x86_64" in platform)):
            raise ValueError(f"{wheel.name} must be a py3-none-any or cp312 x86-64 wheel, but its tags are {python}-{abi}-{platform}.")
    size = sum(w.stat().st_size for w in wheels)
    if size > BUNDLE_LIMIT:
        raise ValueError(f"the wheelhouse must stay under {BUNDLE_LIMIT / 2**20:.0f} MiB, but it holds {size / 2**20:.1f} MiB.")


def install_project(target: Path, *, root: Path = ROOT) -> list[str]:
    """Copy the project's packages into ``target`` as an installed wheel lays them out (pyproject.toml's package-dir); the package names."""
    import tomllib

    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in setup["packages"]:
        source = root / setup["package-dir"][package]
        destination = target.joinpath(*package.split("."))
        destination.mkdir(parents=True, exist_ok=True)
        for module in source.glob("*.py"):
            shutil.copy2(module, destination / module.name)
    return list(setup["packages"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("missing", help="print the packages the GPU image lacks, pinned to the versions installed here")
    d = sub.add_parser("download", help="download (or build) their wheels for CPython 3.12 manylinux x86-64")
    d.add_argument("--out", type=Path, default=ROOT / ".whl", help="the wheelhouse folder (ignored by git; default .whl)")
    i = sub.add_parser("install-project", help="copy particle_nas.* into a folder on PYTHONPATH")
    i.add_argument("--target", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "install-project":
        print(f"particle_nas packages in {args.target}: {', '.join(install_project(args.target))}")
        return 0
    packages = missing(project_requirements())
    if args.command == "missing":
        print("\n".join(f"{name}=={version}" for name, version in packages.items()))
        return 0
    wheels = download(packages, args.out)
    size = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB in {args.out}: " + ", ".join(w.name for w in wheels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
