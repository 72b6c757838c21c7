"""The one version number of mailferry: the Python package, the chart (version and appVersion), the image
tag the operator gives worker Jobs by default, and the kustomize image pins. `scripts/bump-version.sh`
changes all of them together; tests/unit/install/test_install_release.py fails when they differ."""

__version__ = "0.1.0"  # = pyproject.toml [project] version
IMAGE_REPOSITORY = "ghcr.io/mailferry/mailferry"
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
