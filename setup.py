"""Maps the top-level tasks/ and leaderboard/ folders under the dfabench namespace.

Everything else about the package lives in pyproject.toml. A plain `pip install .` therefore ships
dfabench.tasks.* and dfabench.leaderboard.* without putting a generic `tasks` package into
site-packages.
"""
from setuptools import find_packages, setup

MAPPED = {"dfabench.tasks": "tasks", "dfabench.leaderboard": "leaderboard"}

packages = find_packages(include=["dfabench", "dfabench.*"])
package_dir = {"dfabench": "dfabench"}
for namespace, folder in MAPPED.items():
    packages.append(namespace)
    package_dir[namespace] = folder
    for sub in find_packages(where=folder):
        packages.append(f"{namespace}.{sub}")
        package_dir[f"{namespace}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"dfabench.tasks": ["*/*.yaml", "*/*/*.yaml"], "dfabench.leaderboard": ["templates/*"]},
)
