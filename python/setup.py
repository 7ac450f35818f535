# A plain setup.py (no pyproject build isolation) so that
# `pip install ./python` works without network access.
from setuptools import setup

setup(
    name="sparse-reshard",
    version="0.1.0",
    description="Re-shard scipy.sparse .npz shards with MPI (wrapper around mpi_reshard)",
    packages=["sparse_reshard"],
    package_data={"sparse_reshard": ["py.typed"]},
    python_requires=">=3.9",
    extras_require={"helpers": ["numpy", "scipy"]},
)
