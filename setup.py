# SPDX-License-Identifier: Apache-2.0
# Only what pyproject.toml cannot say: the C helper, the warning when it does not
# build, and the kernel module's source carried in the wheel.
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent

# Said when the optional extension fails: pip shows a build's own output only
# with -v, so it also goes to the terminal pip runs in, where there is one.
NO_EXTENSION_WARNING = """
########################################################################
WARNING: pyvfio's C extension (pyvfio._mmio) did not build; pyvfio is
installed with its pure-Python register access instead, which is slower
and has no write_barrier.  For the fast path, install a C compiler and
the Python headers (Debian, Ubuntu: gcc python3-dev; Fedora: gcc
python3-devel), then reinstall from the same source without pip's cached
wheel, e.g. from a checkout or sdist (or pyvfio from an index):
    pip install --no-cache-dir --force-reinstall PATH-OR-pyvfio
Once installed, `pyvfio --version` prints the exact command.
########################################################################
"""


def _tell_user(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(text)
    except OSError:
        pass  # no terminal (CI, a pipe): the build log has it


class BuildExtWarning(build_ext):
    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception:
            if getattr(ext, "optional", False):
                _tell_user(NO_EXTENSION_WARNING)
            raise  # setuptools goes on without an optional extension


class BuildPyWithModuleSource(build_py):
    """Copy kmod/ into the package as pyvfio/kmod_src, so that `pyvfio kmod build`
    and `pyvfio kmod install` work from a wheel."""

    def run(self) -> None:
        super().run()
        source = HERE / "kmod"
        if not (source / "Kbuild").is_file():
            raise RuntimeError(f"{source} is missing: the sdist must carry kmod/")
        target = Path(self.build_lib) / "pyvfio" / "kmod_src"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            source,
            target,
            ignore=shutil.ignore_patterns(
                "*.o", "*.ko", "*.mod", "*.mod.c", ".*.cmd", "*.order", "*.symvers", ".tmp*"
            ),
        )


setup(
    cmdclass={"build_ext": BuildExtWarning, "build_py": BuildPyWithModuleSource},
    ext_modules=[
        # Exact-width MMIO accessors (see src/pyvfio/mmio.py for why this is C).
        # Optional: without a compiler pyvfio falls back to pure Python.
        Extension(
            "pyvfio._mmio",
            ["src/pyvfio/_mmio.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ],
)
