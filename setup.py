"""Packages and their data files, discovered rather than listed, so the wheel cannot drift from
the tree: the design's five root folders install as ``leasegate.<folder>`` (docs/concepts.md).
Everything else about the project is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

ROOTS = ("ownership", "broker", "workers", "gateway", "testing")
CACHES = ["__pycache__", "*.__pycache__"]

package_dir = {f"leasegate.{root}": root for root in ROOTS}
# namespace discovery: a data-only folder (Lua commands, templates, static) is a package too
packages = [name for root in ROOTS for name in (
    f"leasegate.{root}",
    *(f"leasegate.{root}.{sub}" for sub in find_namespace_packages(root, exclude=CACHES)))]

setup(packages=packages, package_dir=package_dir,
      package_data={"": ["*"]}, exclude_package_data={"": ["*.pyc"]})
