"""Loopwise: an online learning engine for recommender feedback loops."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="loopwise",
    version="0.1.0",
    description="Online learning engine for recommender feedback loops: live profiles, "
    "contextual bandits, simulation and policy comparison.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["engine*", "policies*", "simulators*", "experiments*"]),
    # the console's script and stylesheet ship in the package: no CDN at run time
    package_data={"experiments": ["configs/*.yaml"], "engine": ["serve/static/*"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        # CPU users: install with `-c constraints.txt` (torch==2.13.0, CPU build).
        # GPU users may bring any newer CUDA build.
        "torch>=2.1",
        # engine.latent restates FunkMF's SGD step (bit for bit River's, tests/test_latent.py);
        # checked against these versions only
        "river>=0.26,<0.27",
        # compiled kernels: the policies' one-record decide and learn, the engine's per-request work
        "numba>=0.60",
        "gymnasium>=1.0",
        "pyarrow>=14",
        "matplotlib>=3.7",
        "pydantic>=2.5",
        "pyyaml>=6",
        "tqdm>=4.60",
        # differentially private releases (engine.privacy.dp): its measurements and proofs;
        # 0.x releases change the API, so the minor version is pinned in constraints.txt too
        "opendp>=0.16,<0.17",
    ],
    extras_require={
        "ray": ["ray[default]>=2.9"],
        "vw": ["vowpalwabbit>=9.9"],
        "serve": ["fastapi>=0.110", "uvicorn[standard]>=0.27", "httpx>=0.27", "prometheus_client>=0.17"],
        "dev": [
            # pytest 9.2 removed an attribute schemathesis 4.32's pytest plugin reads
            # ('Function' object has no attribute '_nodeid'): seen on a fresh install
            "pytest>=8,<9.2",
            "hypothesis>=6.100",
            "ruff>=0.5",
            "ray[default]>=2.9",
            "vowpalwabbit>=9.9",
            "fastapi>=0.110",
            "uvicorn[standard]>=0.27",
            "httpx>=0.27",
            "prometheus_client>=0.17",
            "schemathesis>=4",
            # the official Personalizer client, run unchanged against `loopwise serve`
            # (tests/test_personalizer_api.py); it brings msrest
            "azure-cognitiveservices-personalizer==0.1.1",
            # console tests drive the system's Chromium (tests/test_console_pages.py)
            "playwright>=1.40",
        ],
    },
    entry_points={"console_scripts": ["loopwise=experiments.cli:main"]},
)
