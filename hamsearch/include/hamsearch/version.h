// The core's version, for code that embeds it from C++. It follows the Python
// package's version (pyproject.toml; tests/test_cmake.py checks that the two
// agree) and CMake reads it from here, so this file is the one place to bump.
#pragma once

/// Major: bumped when a public header changes incompatibly (a removed or
/// renamed function, a changed signature or struct layout).
#define HAMSEARCH_VERSION_MAJOR 0
/// Minor: additions that keep every existing call compiling and meaning the same.
#define HAMSEARCH_VERSION_MINOR 1
/// Patch: fixes only.
#define HAMSEARCH_VERSION_PATCH 0

/// The version as one comparable number: major * 10000 + minor * 100 + patch.
#define HAMSEARCH_VERSION_NUMBER \
    (HAMSEARCH_VERSION_MAJOR * 10000 + HAMSEARCH_VERSION_MINOR * 100 + HAMSEARCH_VERSION_PATCH)

#define HAMSEARCH_STRINGIFY_(x) #x
#define HAMSEARCH_STRINGIFY(x) HAMSEARCH_STRINGIFY_(x)
/// The version as a string literal, "major.minor.patch" (hamsearch._core.__version__).
#define HAMSEARCH_VERSION_STRING                                                                  \
    HAMSEARCH_STRINGIFY(HAMSEARCH_VERSION_MAJOR) "." HAMSEARCH_STRINGIFY(HAMSEARCH_VERSION_MINOR) \
    "." HAMSEARCH_STRINGIFY(HAMSEARCH_VERSION_PATCH)
