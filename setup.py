"""Declares the compiled core; everything else lives in pyproject.toml."""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

CRC = ["csrc/chl_crc32c.c"]
CSRC = ["csrc/chl_crc32c.c", "csrc/chl_streams.c"]
DIRECTIVES = {"language_level": "3", "boundscheck": False, "wraparound": False,
              "cdivision": True, "initializedcheck": False}
CFLAGS = ["-O3", "-std=c11", "-fno-strict-aliasing"]
if os.environ.get("CHRONOLOG_DEBUG"):
    CFLAGS = ["-O0", "-g", "-std=c11", "-UNDEBUG", "-DCHL_DEBUG=1"]


def core(name: str, extra: list[str] = ()) -> Extension:
    return Extension(
        f"chronolog._core.{name}",
        [f"src/chronolog/_core/{name}.pyx", *extra],
        include_dirs=["csrc", "src/chronolog/_core", numpy.get_include()],
        extra_compile_args=CFLAGS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


setup(
    ext_modules=cythonize(
        [core("crc", CRC), core("fileio"), core("events"), core("segment", CRC),
         core("index", CSRC), core("log", CSRC),
         core("scan", CSRC)],
        compiler_directives=DIRECTIVES,
        include_path=["src"],
    ),
)
