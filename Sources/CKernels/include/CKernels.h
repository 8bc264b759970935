// The engine's own vectorised kernels in C, so that each can be compiled for several x86 vector
// extensions and picked at run time (Swift compiles for the x86-64 baseline, SSE2 only).
// Engine/Layers/DirectConvolution.swift calls them; the CPU's extensions come from
// Engine/Core/CPUFeatures.swift, which passes the `level` argument.
#ifndef BISSL_CKERNELS_H
#define BISSL_CKERNELS_H

/// `count` of `bissl_conv3x3_weight_gradient` must be a multiple of this.
#define BISSL_CONV3X3_TILE 64

/// Vector levels: 0 = the x86-64 baseline (SSE2) or another architecture, for which there are no kernels
/// (measured: at SSE2 these lose to OpenBLAS's GEMM on most shapes); 1 = AVX2 with FMA; 2 = AVX-512F with
/// FMA. Only levels 1 and 2 may be passed, and only on a machine that has them.
#define BISSL_LEVEL_BASELINE 0
#define BISSL_LEVEL_AVX2 1
#define BISSL_LEVEL_AVX512 2

/// The highest level this build has kernels for (2 on x86-64, 0 elsewhere).
int bissl_kernels_max_level(void);

/// Where the correlations write their outputs and what they apply to each value first: NCHW images of
/// `height` x `width` pixels (`images` of them), output channel o of image n at `out + n * imageStride +
/// o * channelStride`; each value v of channel o at offset i from `out` stored as `v + shift[o]`, then
/// `+ residual[i]` when `residual` is given (an NCHW tensor laid out as `out`), then ReLU's rule
/// `v <= 0 ? 0 : v` (NaN stays NaN) when `relu` is non-zero, in that order (a folded BatchNorm, residual
/// and ReLU of inference); with `shift` NULL the value is stored as computed (`residual` and `relu` unused).
typedef struct {
    float *out;
    long images, height, width, channelStride, imageStride;
    const float *shift;
    const float *residual;
    int relu;
} bissl_output;

/// The padded planes the kernels read: for each channel c < `channels`, the `count` images' planes of that
/// channel (`images[i] + c * height * width`, `height` rows of `width` floats) as one tall plane at
/// `dst + c * plane`: rows of `width + 2` floats, a zero row, then per image its rows with a zero column
/// either side and a zero row after them; zeros up to `plane` floats (at least `(count (height + 1) + 1)
/// (width + 2)`). Plain C (the weight gradients and the stride-2 correlation read these planes).
void bissl_pad_planes(const float *const *images, long count, long channels, long height, long width,
                      long plane, float *dst);

/// 3x3 pad-1 cross-correlation at `stride` 1 or 2 of a sum of `terms` inputs read from their NCHW planes: for
/// image i < `y->images`, output channel o < `outChannels` and output position (r, s) of the Ho x Wo output plane
/// (Ho = (`height` - 1) / stride + 1, Wo likewise), `g = sum_c sum_{i,j < 3} w[(o * C + c) * 9 + i * 3 + j] *
/// x_c[stride r + i - 1][stride s + j - 1]` over the C = `terms` * `channels` stacked input channels (channel
/// t * channels + c is plane c of `x[t * y->images + i]`, each image `channels` planes of `height` x `width`), the
/// taps outside the plane reading 0 (masked loads: nothing outside the plane is read; stride 2 reads a copy of
/// each plane split into its 4 phases, even/odd rows x even/odd columns); summed over c then (i, j) in that
/// order, each multiply-add fused (the additions of `bissl_conv3x3_by_position`), stored through `y`'s epilogue
/// at `y->out + i * y->imageStride + o * y->channelStride + r Wo + s` (`y->height`, `y->width` unused).
/// Sizes: `outChannels` a multiple of 4. Levels 1 and 2 only; any other level or stride writes nothing.
void bissl_conv3x3_planes(int level, const float *const *x, long terms, long channels, long height, long width,
                          long stride, const float *w, long outChannels, const bissl_output *y);

/// The weight gradient of a 3x3 stride-1 convolution on zero-padded planes stored with `row` floats per row
/// (`bissl_pad_planes`): `dw[(o * channels + c) * 9 + i * 3 + j] += sum_{q < count} dy[o * dyStride + q] *
/// x[c * plane + q + i * row + j]` (each sum formed in vector lanes over q, then the lanes added, then added
/// to dw). Sizes: `outChannels` a multiple of 4; `count` a multiple of `BISSL_CONV3X3_TILE`; x readable at
/// `c * plane + [0, count + 2 * row + 2)`, dy at `o * dyStride + [0, count)`.
void bissl_conv3x3_weight_gradient(int level, const float *dy, long outChannels, long dyStride,
                                   const float *x, long channels, long plane, long row, long count, float *dw);

/// The weight gradient of a 3x3 convolution (any stride) from output gradients stored position by position:
/// `dwT[(c * 9 + i * 3 + j) * outChannels + o] += sum_{p < positions} dyT[p * outChannels + o] *
/// x[c * plane + xoff[p] + i * row + j]`, where `xoff[p]` is the padded-plane offset of output position p's
/// window (its top-left tap). Each sum runs over p in order, one fused multiply-add per term, the same
/// additions at both levels. Sizes: `outChannels` a multiple of 8; x readable at every `c * plane + xoff[p]
/// + [0, 2 * row + 3)`.
void bissl_conv3x3_weight_gradient_by_position(int level, const float *dyT, long outChannels, const float *x,
                                               long channels, long plane, long row, const long *xoff,
                                               long positions, float *dwT);

/// 3x3 cross-correlation (any stride) position by position: for each output position p < positions,
/// `g[o][p] = sum_c sum_{i,j < 3} wT[(c * 9 + i * 3 + j) * outChannels + o] * x[c * plane + xoff[p] + i * row + j]`,
/// summed over c then (i, j) in that order, each multiply-add fused (the additions of `bissl_conv3x3_planes`),
/// stored through `y`'s epilogue at `y->out + o * y->channelStride + yoff[p]` (`y`'s images, height, width
/// and imageStride unused). `xoff[p]`: the padded-plane offset of p's window (its top-left tap).
/// Sizes: `outChannels` a multiple of 8; x readable at every `c * plane + xoff[p] + [0, 2 * row + 3)`.
void bissl_conv3x3_by_position(int level, const float *x, long channels, long plane, long row, const long *xoff,
                               long positions, const float *wT, long outChannels, const bissl_output *y,
                               const long *yoff);

#include "batchnorm.h"
#include "pool.h"
#include "im2col.h"
#include "gemm_output.h"

#endif
