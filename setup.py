"""Build lossctl's optional C speed-ups (see lossctl/native.py).

Everything else is configured in pyproject.toml.  The extensions are optional:
without a C compiler the install still succeeds, and pyarrow and NumPy do the
same work, a little slower.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(f"lossctl.{name}", [f"lossctl/{name}.c"], optional=True)
                   for name in ("_fastcsv", "_exactsum")])
