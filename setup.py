"""Build lossctl's optional C speed-ups (see lossctl/native.py).

Everything else is configured in pyproject.toml.  The extensions are optional:
without a C compiler the install still succeeds, and pyarrow and NumPy do the
same work, a little slower.
"""

from setuptools import Extension, setup

# no FP traps are used: this lets the compiler vectorise the branch-free exp loop
VECTORISE = ["-fno-trapping-math"]

setup(ext_modules=[
    Extension("lossctl.io._fastcsv", ["lossctl/io/_fastcsv.c"], optional=True),
    Extension("lossctl.core._exactsum", ["lossctl/core/_exactsum.c"], optional=True),
    Extension("lossctl.core._kernels", ["lossctl/core/_kernels.c"], optional=True,
              extra_compile_args=VECTORISE),
])
