"""Build-time part of the install: the C point kernels (farthest-point sampling, kNN).

Everything else is declared in pyproject.toml. ``adapters/_point_kernels.c`` is plain C (no
Python C API); ``omnipatch.adapters.point_kernels`` opens the built shared object with ctypes.
The extension is optional: without a C compiler the install still succeeds and the point
kernels run their torch path (and say so once).
"""

from setuptools import Extension, setup

FLAGS = ["-O3", "-pthread", "-ffp-contract=off", "-fno-math-errno", "-ffinite-math-only", "-fno-signed-zeros",
         "-fno-trapping-math"]  # no FMA: the same rounding as open3d and the torch oracle

setup(ext_modules=[Extension("omnipatch.adapters._point_kernels", ["adapters/_point_kernels.c"],
                             extra_compile_args=FLAGS, extra_link_args=["-pthread"], optional=True)])
