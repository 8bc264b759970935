// A single-precision GEMM for convolutions at inference: the weight matrix packed once into the
// micro-kernel's layout (with a per-row scale, BatchNorm's, folded in), the product written straight into
// NCHW tensors with the per-channel shift, a residual and ReLU applied on the way out.
// Engine/Layers/PackedConvolution.swift calls it; the vector levels are those of CKernels.h.
#ifndef BISSL_PACKED_GEMM_H
#define BISSL_PACKED_GEMM_H

/// Rows of A per packed panel at `level` (12 at AVX-512, 6 at AVX2; 0 at the baseline, which has no kernel).
long bissl_packed_gemm_rows(int level);

/// Floats `bissl_packed_gemm_pack` writes for an `M` x `K` matrix at `level`: `ceil(M / rows) * rows * K`.
long bissl_packed_gemm_size(int level, long M, long K);

/// Packs `a` `[M, K]` (row-major, `lda` floats per row) times `scale[m]` per row (no scale when `scale` is
/// NULL; each product rounded once to float) into `packed` (`bissl_packed_gemm_size` floats): panel `i` of
/// R = `bissl_packed_gemm_rows(level)` rows holds `packed[(i * K + k) * R + r] = a[(i R + r) lda + k] * scale[i R + r]`,
/// rows past M zero.
void bissl_packed_gemm_pack(int level, const float *a, long lda, const float *scale, long M, long K, float *packed);

/// Floats of the `scratch` argument of `bissl_packed_gemm` for sums of `K` terms at `level` (K x the
/// columns of one micro-kernel panel, 32 at AVX-512 and 16 at AVX2: room for one panel of B).
long bissl_packed_gemm_scratch(int level, long K);

/// `out[at(m, j)] = f(sum_{k < K} A[m, k] B[k, j])` for rows `m0 <= m < m1` and columns `j < N`, with A packed by
/// `bissl_packed_gemm_pack` (M rows), each sum formed in k order from 0 by fused multiply-adds (the same
/// additions at both levels), then `f(v) = v + shift[m]`, plus `residual[at(m, j)]` when `residual` is not
/// NULL, then ReLU's rule (`v <= 0 ? 0 : v`, NaN stays NaN) when `relu` is non-zero.
/// B's column j is column `j % bPlane` of block `j / bPlane`: `B[k, j] = b[(j / bPlane) * bImageStride + k * ldb + j % bPlane]`
/// (a row-major `[K, N]` matrix: `bPlane = N`, `bImageStride = 0`; the pixels of NCHW images read in place:
/// `bPlane` the plane, `ldb = bPlane`, `bImageStride` the image size), `bPlane` a multiple of the vector
/// width (16) unless it is N. Output column j is pixel `j % plane` of image `j / plane`:
/// `at(m, j) = (j / plane) * imageStride + m * plane + j % plane` (NCHW with `imageStride = M * plane`).
/// `m0` a multiple of the panel rows; `scratch` writable, `bissl_packed_gemm_scratch(level, K)` floats (each
/// panel of B's columns is copied there, zero-padded past N); `out` must not overlap `b`, `residual` or `scratch`.
void bissl_packed_gemm(int level, const float *packed, long M, long K, long m0, long m1, const float *b, long ldb,
                       long bPlane, long bImageStride, long N, long plane, long imageStride, const float *shift,
                       const float *residual, int relu, float *out, float *scratch);

#endif
