"""The compiled helper of `memdiag leaks` (everything else is in pyproject.toml).

Optional: without a compiler the package installs, and the pure-Python loops run instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "memdiag.measure.python._heapwalk",
            ["memdiag/measure/python/_heapwalk.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
