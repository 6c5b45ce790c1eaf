"""Declares the compiled core; everything else lives in pyproject.toml."""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

CRC = ["csrc/chl_crc32c.c"]
CSRC = ["csrc/chl_crc32c.c", "csrc/chl_streams.c", "csrc/chl_streams_file.c"]
DIRECTIVES = {"language_level": "3", "boundscheck": False, "wraparound": False,
              "cdivision": True, "initializedcheck": False}
CFLAGS = ["-O3", "-std=c11", "-fno-strict-aliasing"]
if os.environ.get("CHRONOLOG_DEBUG"):
    CFLAGS = ["-O0", "-g", "-std=c11", "-UNDEBUG", "-DCHL_DEBUG=1"]


# The vendored zstd (csrc/zstd, see its README) is compiled into the codec extension only,
# with its symbols hidden so they cannot clash with another zstd in the process.
ZSTD = ["csrc/zstd/zstd.c"]
ZSTD_MACROS = [("ZSTDLIB_VISIBLE", ""), ("ZDICTLIB_VISIBLE", ""), ("ZSTDERRORLIB_VISIBLE", ""),
               ("ZSTD_MULTITHREAD", None)]


def core(name: str, extra: list[str] = (), *, zstd: bool = False) -> Extension:
    return Extension(
        f"chronolog._core.{name}",
        [f"src/chronolog/_core/{name}.pyx", *extra],
        include_dirs=["csrc", "csrc/zstd", "src/chronolog/_core", numpy.get_include()],
        extra_compile_args=[*CFLAGS, "-std=gnu11", "-fvisibility=hidden"] if zstd else CFLAGS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       *(ZSTD_MACROS if zstd else [])],
    )


setup(
    ext_modules=cythonize(
        [core("crc", CRC), core("fileio"), core("events"), core("segment", CRC),
         core("checkpoint", CSRC), core("index", CSRC), core("batch", CRC),
         core("recovery", CSRC), core("reads", CSRC),
         core("commit", CSRC), core("write", CRC), core("log", CSRC),
         core("verify", CSRC), core("compact", CRC), core("columns"), core("scan", CSRC),
         core("codec", CRC + ZSTD + ["csrc/chl_zjobs.c"], zstd=True)],
        compiler_directives=DIRECTIVES,
        include_path=["src"],
    ),
)
