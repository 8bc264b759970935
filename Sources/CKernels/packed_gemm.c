// The packed-weight GEMM of include/PackedGEMM.h (declarations and contracts there). One body per vector
// width, instantiated with GCC/Clang vector extensions as conv3x3.c's kernels are.
//
// Micro-kernel: MR rows of A (one packed panel, read as broadcast scalars) times NV vectors of B's columns,
// MR x NV accumulators held in registers (24 of 32 zmm at AVX-512: 12 x 2; 12 of 16 ymm at AVX2: 6 x 2);
// per k it loads NV vectors of B and MR floats of A for MR x NV fused multiply-adds. Loops: blocks of at
// most 256 k (equal blocks), then blocks of rows whose packed A (about 512 KB) stays in L2, then panels of
// NV vectors of columns, each copied once into a contiguous scratch panel (256 x NV vectors, kept in L1; B's
// rows are the unfolded input or the NCHW images themselves, far apart in memory), then the block's panels
// of MR rows. A later block of k loads the partial sums the earlier ones stored in the output and continues
// them, so every sum is still formed in k order, rounded after each term only (the same value as without
// blocks); the epilogue runs with the last block.
#include "CKernels.h"
#include "PackedGEMM.h"
#include <string.h>

#if defined(__clang__)
#define UNROLL _Pragma("clang loop unroll(full)")
#else
#define UNROLL _Pragma("GCC unroll 16")
#endif

/// Floats of packed A per block of rows (kept in L2 across the column panels).
#define BLOCK_FLOATS (1L << 17)
/// Terms per block of k, at most: a panel of B's columns over one block (256 x 32 floats at AVX-512) stays in L1.
#define K_BLOCK 256

#define PACKED_GEMM(SUFFIX, TARGET, VL, MR, NV)                                                                \
typedef float pv_##SUFFIX __attribute__((vector_size(VL * 4)));                                               \
typedef int pm_##SUFFIX __attribute__((vector_size(VL * 4)));                                                 \
/* count (<= VL) values of row m from column j on, at their NCHW places: the partial sums of an earlier block */ \
/* of k (zeros past count) */                                                                                  \
TARGET static inline __attribute__((always_inline)) pv_##SUFFIX load_##SUFFIX(long m, long j, long count,       \
        long plane, long imageStride, const float *out) {                                                     \
    long n = j / plane, q = j % plane;                                                                         \
    pv_##SUFFIX v = (pv_##SUFFIX){0};                                                                          \
    if (count == VL && q + VL <= plane) { memcpy(&v, out + n * imageStride + m * plane + q, VL * 4); return v; } \
    float t[VL] = {0};                                                                                         \
    for (long l = 0; l < count; l++) {                                                                         \
        t[l] = out[n * imageStride + m * plane + q];                                                           \
        if (++q == plane) { q = 0; n++; }                                                                      \
    }                                                                                                          \
    memcpy(&v, t, VL * 4);                                                                                     \
    return v;                                                                                                  \
}                                                                                                              \
/* count (<= VL) values of row m from column j on, to their NCHW places: through the epilogue when `last`, */  \
/* else as they are (partial sums) */                                                                          \
TARGET static inline __attribute__((always_inline)) void store_##SUFFIX(pv_##SUFFIX v, long m, long j, long count, \
        long plane, long imageStride, const float *shift, const float *residual, int relu, int last, float *out) { \
    if (last) v += shift[m];                                                                                   \
    long n = j / plane, q = j % plane;                                                                         \
    if (count == VL && q + VL <= plane) {                                                                      \
        long at = n * imageStride + m * plane + q;                                                             \
        if (last && residual) { pv_##SUFFIX r; memcpy(&r, residual + at, VL * 4); v += r; }                    \
        if (last && relu) {                                                                                    \
            pm_##SUFFIX keep = (v > 0) | (v != v), bits;   /* ReLU's rule: NaN stays NaN */                    \
            memcpy(&bits, &v, VL * 4); bits &= keep; memcpy(&v, &bits, VL * 4);                               \
        }                                                                                                      \
        memcpy(out + at, &v, VL * 4);                                                                          \
        return;                                                                                                \
    }                                                                                                          \
    float t[VL];                                                                                               \
    memcpy(t, &v, VL * 4);                                                                                     \
    for (long l = 0; l < count; l++) {                                                                         \
        long at = n * imageStride + m * plane + q;                                                             \
        float s = t[l];                                                                                        \
        if (last && residual) s += residual[at];                                                               \
        out[at] = last && relu ? (s <= 0 ? 0 : s) : s;                                                         \
        if (++q == plane) { q = 0; n++; }                                                                      \
    }                                                                                                          \
}                                                                                                              \
/* rows x cols of the output: the sums over k in [k0, k0 + kc) added to those of the earlier blocks */         \
TARGET static inline __attribute__((always_inline)) void tile_##SUFFIX(const float *ap, const float *const *bp,  \
        long ldb, long kc, long m, long rows, long j, long cols, long plane, long imageStride, const float *shift, \
        const float *residual, int relu, int first, int last, float *out) {                                   \
    pv_##SUFFIX acc[MR][NV];                                                                                   \
    UNROLL for (int r = 0; r < MR; r++)                                                                        \
        UNROLL for (int v = 0; v < NV; v++)                                                                    \
            acc[r][v] = first || r >= rows || v * VL >= cols ? (pv_##SUFFIX){0}                                \
                : load_##SUFFIX(m + r, j + v * VL, cols - v * VL < VL ? cols - v * VL : VL, plane, imageStride, out); \
    for (long k = 0; k < kc; k++) {                                                                            \
        pv_##SUFFIX bv[NV];                                                                                    \
        UNROLL for (int v = 0; v < NV; v++) memcpy(&bv[v], bp[v] + k * ldb, VL * 4);                           \
        const float *a = ap + k * MR;                                                                          \
        UNROLL for (int r = 0; r < MR; r++) UNROLL for (int v = 0; v < NV; v++) acc[r][v] += a[r] * bv[v];    \
    }                                                                                                          \
    /* constant indices only, so that the accumulators stay in registers */                                    \
    UNROLL for (int r = 0; r < MR; r++)                                                                        \
        UNROLL for (int v = 0; v < NV; v++)                                                                    \
            if (r < rows && v * VL < cols)                                                                     \
                store_##SUFFIX(acc[r][v], m + r, j + v * VL, cols - v * VL < VL ? cols - v * VL : VL, plane,   \
                               imageStride, shift, residual, relu, last, out);                                 \
}                                                                                                              \
TARGET static void gemm_##SUFFIX(const float *packed, long M, long K, long m0, long m1, const float *b, long ldb, \
        long bPlane, long bImageStride, long N, long plane, long imageStride, const float *shift,              \
        const float *residual, int relu, float *out, float *panel) {                                          \
    (void)M;                                                                                                   \
    const long NR = NV * VL;                                                                                   \
    /* blocks of k: equal, at most K_BLOCK */                                                                  \
    long kBlocks = (K + K_BLOCK - 1) / K_BLOCK, kc = kBlocks > 0 ? (K + kBlocks - 1) / kBlocks : 0;            \
    long block = BLOCK_FLOATS / ((kc > 0 ? kc : 1) * MR) * MR;                                                 \
    if (block < MR) block = MR;                                                                                \
    for (long k0 = 0; k0 < K || (K == 0 && k0 == 0); k0 += kc > 0 ? kc : 1) {                                  \
        long kn = K - k0 < kc ? K - k0 : kc;                                                                   \
        int first = k0 == 0, last = k0 + kn >= K;                                                              \
        for (long mb = m0; mb < m1; mb += block) {                                                             \
            long me = mb + block < m1 ? mb + block : m1;                                                       \
            for (long j = 0; j < N; j += NR) {                                                                 \
                long cols = N - j < NR ? N - j : NR;                                                           \
                /* the panel's kn x NR values of B, contiguous (zero-padded past N) */                         \
                if (cols == NR) {                                                                              \
                    const float *src[NV];                                                                      \
                    for (int v = 0; v < NV; v++) {                                                             \
                        long jv = j + v * VL;                                                                  \
                        src[v] = b + (jv / bPlane) * bImageStride + jv % bPlane + k0 * ldb;                    \
                    }                                                                                          \
                    for (long k = 0; k < kn; k++)                                                              \
                        for (int v = 0; v < NV; v++) memcpy(panel + k * NR + v * VL, src[v] + k * ldb, VL * 4); \
                } else {                                                                                       \
                    for (long c = 0; c < NR; c++) {                                                            \
                        long jj = j + c;                                                                       \
                        const float *src = b + (jj / bPlane) * bImageStride + jj % bPlane + k0 * ldb;          \
                        for (long k = 0; k < kn; k++) panel[k * NR + c] = c < cols ? src[k * ldb] : 0;         \
                    }                                                                                          \
                }                                                                                              \
                const float *bp[NV];                                                                           \
                for (int v = 0; v < NV; v++) bp[v] = panel + v * VL;                                           \
                for (long m = mb; m < me; m += MR)                                                             \
                    tile_##SUFFIX(packed + (m / MR) * K * MR + k0 * MR, bp, NR, kn, m, me - m < MR ? me - m : MR, \
                                  j, cols, plane, imageStride, shift, residual, relu, first, last, out);       \
            }                                                                                                  \
        }                                                                                                      \
        if (K == 0) break;                                                                                     \
    }                                                                                                          \
}

#if defined(__x86_64__)
PACKED_GEMM(avx2, __attribute__((target("avx2,fma"))), 8, 6, 2)
PACKED_GEMM(avx512, __attribute__((target("avx512f,fma"))), 16, 12, 2)
#endif

long bissl_packed_gemm_rows(int level) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512) return 12;
    if (level == BISSL_LEVEL_AVX2) return 6;
#endif
    (void)level;
    return 0;
}

long bissl_packed_gemm_scratch(int level, long K) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512) return 32 * K;
    if (level == BISSL_LEVEL_AVX2) return 16 * K;
#endif
    (void)level; (void)K;
    return 0;
}

long bissl_packed_gemm_size(int level, long M, long K) {
    long R = bissl_packed_gemm_rows(level);
    return R == 0 ? 0 : (M + R - 1) / R * R * K;
}

void bissl_packed_gemm_pack(int level, const float *a, long lda, const float *scale, long M, long K, float *packed) {
    long R = bissl_packed_gemm_rows(level);
    if (R == 0) return;   // no kernel for this level
    for (long i = 0; i < (M + R - 1) / R; i++) {
        float *panel = packed + i * K * R;
        for (long r = 0; r < R; r++) {
            long m = i * R + r;
            for (long k = 0; k < K; k++)
                panel[k * R + r] = m < M ? (scale ? a[m * lda + k] * scale[m] : a[m * lda + k]) : 0;
        }
    }
}

void bissl_packed_gemm(int level, const float *packed, long M, long K, long m0, long m1, const float *b, long ldb,
                       long bPlane, long bImageStride, long N, long plane, long imageStride, const float *shift, const float *residual, int relu,
                       float *out, float *scratch) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512) {
        gemm_avx512(packed, M, K, m0, m1, b, ldb, bPlane, bImageStride, N, plane, imageStride, shift, residual, relu, out, scratch);
        return;
    }
    if (level == BISSL_LEVEL_AVX2) {
        gemm_avx2(packed, M, K, m0, m1, b, ldb, bPlane, bImageStride, N, plane, imageStride, shift, residual, relu, out, scratch);
        return;
    }
#endif
    (void)level; (void)packed; (void)M; (void)K; (void)m0; (void)m1; (void)b; (void)ldb; (void)bPlane; (void)bImageStride; (void)N; (void)plane;
    (void)imageStride; (void)shift; (void)residual; (void)relu; (void)out; (void)scratch;   // no kernel for this level
}
