// The unfolding of Engine/Layers/Conv2d.swift's GEMM path (im2col) and MaxPool2d's inference pass, in C
// so that each is compiled for the CPU's vector level (the Swift engine is compiled for the x86-64
// baseline: its strided gathers and window maxima ran one float at a time). Both only move or compare
// values: every level gives the same bits as the Swift definitions they replace.
#ifndef BISSL_IM2COL_H
#define BISSL_IM2COL_H

/// im2col of `count` images (`images[n]`: image n's `channels` planes of `height` x `width` floats, NCHW)
/// for a `kernel` x `kernel` convolution with `stride` and zero `padding` giving `outHeight` x `outWidth`
/// output planes (P = outHeight * outWidth): `cols` `[channels * kernel * kernel, count * P]` row-major,
/// row `(c * kernel + i) * kernel + j`, column `n * P + oh * outWidth + ow` holds
/// `images[n][c][oh * stride - padding + i][ow * stride - padding + j]`, 0 outside the image. Every value
/// of `cols` is written once. `level`: `BISSL_LEVEL_*` of CKernels.h (0, the baseline, runs anywhere;
/// 1 and 2 only on a CPU that has them); the same values at every level.
void bissl_im2col(int level, const float *const *images, long count, long channels, long height, long width,
                  long kernel, long stride, long padding, long outHeight, long outWidth, float *cols);

/// Max pooling values only (`torch.nn.MaxPool2d` in inference, no argmax kept): for each of `planes`
/// planes of `height` x `width` floats at `x + plane * height * width`, output `(oh, ow)` of the
/// `outHeight` x `outWidth` plane at `y + plane * outHeight * outWidth` is the first value of its window's
/// valid taps (rows `oh * stride - padding + [0, kernel)`, the same for columns, inside the plane) in
/// row-major order, then replaced by each later tap v with `v > best || v != v` (NaN propagates), in that
/// order: the values of MaxPool2d.forward's comparisons. Every window must hold a valid tap
/// (`padding < kernel`). `level` as for `bissl_im2col`.
void bissl_maxpool_infer(int level, const float *x, long planes, long height, long width, long kernel, long stride,
                         long padding, long outHeight, long outWidth, float *y);

#endif
