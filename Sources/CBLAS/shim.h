// OpenBLAS's CBLAS interface (Debian: libopenblas-dev, found through `pkg-config openblas`).
#ifndef BISSL_CBLAS_SHIM_H
#define BISSL_CBLAS_SHIM_H
#include <cblas.h>
#endif
