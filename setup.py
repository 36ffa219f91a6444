"""Build lossctl's optional C speed-ups (see lossctl/native.py).

Everything else is configured in pyproject.toml.  The extensions are optional:
without a C compiler the install still succeeds, and pyarrow and NumPy do the
same work, a little slower (``lossctl --version`` says which are built).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# no FP traps are used: this lets GCC and clang vectorise the branch-free exp loop
VECTORISE = {"lossctl.core._kernels": ["-fno-trapping-math"]}


class BuildExt(build_ext):
    """GCC/clang flags only where the compiler takes them (MSVC does not)."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type != "msvc":
            for ext in self.extensions:
                ext.extra_compile_args += VECTORISE.get(ext.name, [])
        super().build_extensions()


setup(
    ext_modules=[
        Extension("lossctl.io._fastcsv", ["lossctl/io/_fastcsv.c"], optional=True),
        Extension("lossctl.core._exactsum", ["lossctl/core/_exactsum.c"], optional=True),
        Extension("lossctl.engine._keyindex", ["lossctl/engine/_keyindex.c"], optional=True),
        Extension("lossctl.core._kernels", ["lossctl/core/_kernels.c"], optional=True),
    ],
    cmdclass={"build_ext": BuildExt},
)
