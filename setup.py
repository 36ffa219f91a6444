"""Build the optional C fast path for numeric CSV blocks (see lossctl/fastcsv.py).

Everything else is configured in pyproject.toml.  The extension is optional:
without a C compiler the install still succeeds and pyarrow reads every block.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("lossctl._fastcsv", ["lossctl/_fastcsv.c"], optional=True)])
