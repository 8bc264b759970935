// OpenBLAS's CBLAS interface (Debian: libopenblas-dev, found through `pkg-config openblas`), plus glibc's
// malloc.h for `mallopt` (Engine/Core/Runtime.swift tunes the allocator for the engine's large buffers).
#ifndef BISSL_CBLAS_SHIM_H
#define BISSL_CBLAS_SHIM_H
#include <cblas.h>
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
#endif
