"""Map the top-level role folders into the single ``promptzip`` distribution.

``promptzip/`` is the core package; ``compressors/``, ``retrievers/``, ``integrations/``, ``evals/``, ``compat/`` and
``training/`` install as ``promptzip.compressors`` and so on. Sub-packages are discovered, never listed by hand, so
nothing is silently dropped from the wheel.
"""

from setuptools import find_packages, setup

ROLE_FOLDERS = ("compressors", "retrievers", "integrations", "evals", "compat", "training")


def _packages() -> tuple[list[str], dict[str, str]]:
    packages = ["promptzip", *(f"promptzip.{p}" for p in find_packages("promptzip"))]
    package_dir = {"promptzip": "promptzip"}
    for folder in ROLE_FOLDERS:
        root = f"promptzip.{folder}"
        package_dir[root] = folder
        packages.append(root)
        packages.extend(f"{root}.{sub}" for sub in find_packages(folder))
    return packages, package_dir


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir)
