# SPDX-License-Identifier: Apache-2.0
# Only the C helper lives here; all metadata is in pyproject.toml.
from setuptools import Extension, setup

setup(
    ext_modules=[
        # Exact-width MMIO accessors (see src/pyvfio/mmio.py for why this is C).
        # Optional: without a compiler pyvfio falls back to pure Python.
        Extension(
            "pyvfio._mmio",
            ["src/pyvfio/_mmio.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
