"""nion-autoem: autonomous STEM experiments inside Nion Swift."""

import pathlib

import setuptools

here = pathlib.Path(__file__).parent

setuptools.setup(
    name="nion-autoem",
    version="0.1.0",
    description="Autonomous STEM experiments for Nion Swift: DKL active spectroscopy, ELIT atom finding and beam-targeting policies",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=setuptools.find_namespace_packages(include=["nion_autoem", "nion_autoem.*", "nion_autoem_dkl", "nion_autoem_dkl.*", "nion_autoem_targeting", "nion_autoem_targeting.*", "nion_autoem_checks",
                                                         "nion_autoem_elit", "nion_autoem_elit.*", "nion_autoem_fewshot", "nion_autoem_fewshot.*",
                                                         "nion_autoem_forecast", "nion_autoem_forecast.*", "nion_autoem_models", "nion_autoem_models.*",
                                                         "nionswift_plugin.nion_autoem"]),
    package_data={"nion_autoem_elit": ["models/*.pt", "models/*.json"], "nion_autoem_fewshot": ["models/*.pt", "models/*.json"],
                  "nion_autoem_dkl": ["models/*.pt", "models/*.json"],
                  "nion_autoem_forecast": ["models/*.pt", "models/*.json"], "nionswift_plugin.nion_autoem": ["manifest.json"]},
    include_package_data=True,
    install_requires=[
        "nionswift>=16.16,<17",
        "nionswift-instrumentation>=23.6,<24",
        "nionswift-usim>=5.4,<6",
        "nionui>=10.2,<11",
        "nionutils>=4.14,<5",
        "niondata>=15.9,<16",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-image>=0.22",
        "torch>=2.2",
        "gpytorch>=1.11",
        "matplotlib>=3.7",
        "event-model>=1.24",
        "rosettasciio[hdf5]>=0.15",
        "Pyro5>=5.15",  # remote steering: the plan queue server and its client
        "msgpack>=1.0",  # remote steering: the only wire format accepted (arrays as raw bytes)
        "cryptography>=42",  # remote steering: the TLS certificate generated on first use
        "dask>=2026.8",
        "distributed>=2026.8",  # ELIT training as Dask tasks (a LocalCluster, or a lab's scheduler)
        "safetensors>=0.4",  # model repository weights: tensors only, no pickle
        "mlflow>=3.17",  # a lab's MLflow model registry behind the model repository's interface; the tests start a real `mlflow server` (mlflow-skinny has no server)
    ],
    extras_require={
        "dev": ["pytest>=8", "ruff>=0.5", "mypy>=1.10", "sparse>=0.15"],  # sparse: RosettaSciIO reads Velox EDS spectrum images with it
        "gui": ["PySide6-Essentials==6.11.3"],
        "bench": ["bluesky>=1.15"],
    },
)
