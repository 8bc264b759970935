// The pass after Engine/Layers/Conv2d.swift's GEMMs (inference with a folded BatchNorm): the product's
// rows moved into their NCHW places through the epilogue of `bissl_output` (shift, residual, ReLU), in C
// so that it runs at the CPU's vector level and without a call per (image, channel) plane.
#ifndef BISSL_GEMM_OUTPUT_H
#define BISSL_GEMM_OUTPUT_H

#include "CKernels.h"

/// For image n < `y->images`, channel o < `channels` and q < P = `y->height` * `y->width`: the value
/// `v = rows[n * rowImageStride + o * rowStride + q]` stored at `y->out + n * y->imageStride +
/// o * y->channelStride + q` as `v + shift[o]`, `+ residual` at that offset, then ReLU's rule
/// `v <= 0 ? 0 : v` when `y->relu` (the epilogue of `bissl_output`, the same additions in the same order),
/// or as `v` when `y->shift` is NULL. `rows` may be `y->out` with the same strides (in place); otherwise
/// the two must not overlap. The same values at every `level` (`BISSL_LEVEL_*`; 0 runs anywhere).
void bissl_store_rows(int level, const float *rows, long rowImageStride, long rowStride, long channels,
                      const bissl_output *y);

#endif
