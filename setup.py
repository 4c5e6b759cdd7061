"""The one compiled part: PDQ's downsample (cache/intake/_pdqcore.c), built by `make install`.

Everything else about the package is in pyproject.toml. -ffp-contract=off keeps the C
compiler from fusing a multiply and an add, which would round differently from Meta's
reference on a machine with FMA instructions.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cache.intake._pdqcore",
            ["cache/intake/_pdqcore.c"],
            extra_compile_args=["-O3", "-ffp-contract=off", "-Wall"],
        )
    ]
)
