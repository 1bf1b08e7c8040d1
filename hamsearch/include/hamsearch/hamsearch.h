// Everything an embedding C++ program needs, in one include:
//     #include <hamsearch/hamsearch.h>
// The flat and multi-index-hashing indexes, the index file format (save and
// load), the metrics, the ISA levels (set_isa, active_kernels) and the limits.
// Headers not reached from here (topk.h, parallel.h, mih_policy.h, the
// kernels) are the core's internals and are not installed.
#pragma once

#include "version.h"

#include "common.h"
#include "constants.h"
#include "flat_index.h"
#include "format.h"
#include "metrics.h"
#include "mih_index.h"
#include "storage.h"
