# Makes this directory the Cython package `hamsearch` on an include path:
# cythonize(..., include_path=[hamsearch.get_include()]) then finds
# `from hamsearch.libhamsearch cimport ...` (libhamsearch.pxd, beside the
# C++ headers it declares), in an installed wheel and in a source checkout.
