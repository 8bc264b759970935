// 3x3 cross-correlation kernels (the declarations and their contracts are in include/CKernels.h).
// Each body is instantiated per vector width (GCC/Clang vector extensions or intrinsics). Two kinds:
// - vectors across positions: the correlation read from the NCHW planes at stride 1 and from their phase-split
//   copies at stride 2 (`PLANES_KERNEL`: OB output channels x T images' vectors of positions per tile, at most
//   16 accumulators of 32 zmm at AVX-512, 8 of 16 ymm at AVX2) and the stride-1 weight gradient on zero-padded
//   planes (`KERNELS(suffix, target, lanes, WOB)`: WOB output channels x 9 taps at a time);
// - vectors across output channels (`POSITION_KERNELS`, `CORRELATION_BY_POSITION`, any stride): listed
//   output positions, each x value broadcast, weights and output gradients with the output channel innermost.
#include "CKernels.h"
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define TAPS 9

// `y`'s epilogue on one value of output channel o whose NCHW offset from `y->out` is `at` (see bissl_output).
static inline __attribute__((always_inline)) float epilogue(const bissl_output *y, long o, long at, float v) {
    if (!y->shift) return v;
    v = v + y->shift[o];
    if (y->residual) v += y->residual[o * y->channelStride + at];
    if (y->relu) v = v <= 0 ? 0.0f : v;   // ReLU's rule: NaN stays NaN, -0 becomes +0
    return v;
}

#define KERNELS(SUFFIX, TARGET, VL, WOB)                                                                       \
typedef float vf_##SUFFIX __attribute__((vector_size(VL * 4)));                                               \
TARGET static void grad_##SUFFIX(const float *dy, long O, long dyStride, const float *x, long C, long plane,     \
                                 long row, long count, float *dw) {                                            \
    long off[TAPS];                                                                                            \
    for (int t = 0; t < TAPS; t++) off[t] = (t / 3) * row + t % 3;                                             \
    for (long o0 = 0; o0 < O; o0 += WOB) {                                                                     \
        for (long c = 0; c < C; c++) {                                                                         \
            vf_##SUFFIX acc[WOB][TAPS];                                                                        \
            for (int b = 0; b < WOB; b++) for (int t = 0; t < TAPS; t++) acc[b][t] = (vf_##SUFFIX){0};         \
            const float *xc = x + c * plane;                                                                   \
            for (long q = 0; q < count; q += VL) {                                                             \
                vf_##SUFFIX g[WOB];                                                                            \
                for (int b = 0; b < WOB; b++) memcpy(&g[b], dy + (o0 + b) * dyStride + q, VL * 4);            \
                for (int t = 0; t < TAPS; t++) {                                                               \
                    vf_##SUFFIX xv;                                                                            \
                    memcpy(&xv, xc + q + off[t], VL * 4);                                                      \
                    for (int b = 0; b < WOB; b++) acc[b][t] += g[b] * xv;                                      \
                }                                                                                              \
            }                                                                                                  \
            for (int b = 0; b < WOB; b++)                                                                      \
                for (int t = 0; t < TAPS; t++) {                                                               \
                    float s = 0;                                                                               \
                    for (int l = 0; l < VL; l++) s += acc[b][t][l];                                            \
                    dw[((o0 + b) * C + c) * TAPS + t] += s;                                                    \
                }                                                                                              \
        }                                                                                                      \
    }                                                                                                          \
}

// The weight gradient by position: vectors across output channels (dy stored position-major, one
// aligned load per position) times scalars of x broadcast from any offset, so no unaligned vector reads
// and no lane sums. OV vectors of output channels x 9 taps of accumulators (18 of 32 zmm at AVX-512, 9 of
// 16 ymm at AVX2), loaded from and stored to dwT around each block of POSITION_BLOCK positions (dy's rows
// of a block stay in L1).
#define POSITION_BLOCK 128
#define POSITION_KERNELS(SUFFIX, TARGET, VL, OV)                                                               \
TARGET static inline __attribute__((always_inline)) void wtile_##SUFFIX(int ov, const float *dyT, long O, long o0, \
        const float *x, long C, long plane, long row, const long *xoff, long p0, long p1, float *dwT) {        \
    for (long c = 0; c < C; c++) {                                                                             \
        vf_##SUFFIX acc[OV][TAPS];                                                                             \
        float *d = dwT + c * TAPS * O + o0;                                                                    \
        for (int b = 0; b < ov; b++) for (int t = 0; t < TAPS; t++) memcpy(&acc[b][t], d + t * O + b * VL, VL * 4); \
        const float *xc = x + c * plane;                                                                       \
        for (long p = p0; p < p1; p++) {                                                                       \
            vf_##SUFFIX g[OV];                                                                                 \
            for (int b = 0; b < ov; b++) memcpy(&g[b], dyT + p * O + o0 + b * VL, VL * 4);                    \
            const float *xp = xc + xoff[p];                                                                    \
            for (int t = 0; t < TAPS; t++) {                                                                   \
                float s = xp[(t / 3) * row + t % 3];                                                           \
                for (int b = 0; b < ov; b++) acc[b][t] += s * g[b];                                            \
            }                                                                                                  \
        }                                                                                                      \
        for (int b = 0; b < ov; b++) for (int t = 0; t < TAPS; t++) memcpy(d + t * O + b * VL, &acc[b][t], VL * 4); \
    }                                                                                                          \
}                                                                                                              \
TARGET static void wgrad_by_position_##SUFFIX(const float *dyT, long O, const float *x, long C, long plane,     \
        long row, const long *xoff, long positions, float *dwT) {                                               \
    for (long p0 = 0; p0 < positions; p0 += POSITION_BLOCK) {                                                  \
        long p1 = p0 + POSITION_BLOCK < positions ? p0 + POSITION_BLOCK : positions;                           \
        long o0 = 0;                                                                                           \
        for (; o0 + OV * VL <= O; o0 += OV * VL) wtile_##SUFFIX(OV, dyT, O, o0, x, C, plane, row, xoff, p0, p1, dwT); \
        for (; o0 < O; o0 += VL) wtile_##SUFFIX(1, dyT, O, o0, x, C, plane, row, xoff, p0, p1, dwT);           \
    }                                                                                                          \
}

// The correlation by position: PT positions x OV vectors of output channels of accumulators (the weights
// stored [C][9][O], one aligned load per tap and vector; each x value broadcast), summed over c then the
// taps as `PLANES_KERNEL` does, then written to the positions' NCHW places through a small tile.
#define CORRELATION_BY_POSITION(SUFFIX, TARGET, VL)                                                            \
TARGET static inline __attribute__((always_inline)) void ctile_##SUFFIX(const int PT, const int OV,            \
        const float *x, long C, long plane, long row, const long *xoff, long p0, long positions,              \
        const float *wT, long O, long o0, const bissl_output *y, const long *yoff) {                      \
    vf_##SUFFIX acc[PT][OV];                                                                                   \
    const float *xp[PT];                                                                                       \
    long at[PT];                                                                                               \
    for (int i = 0; i < PT; i++) {                                                                             \
        long p = p0 + i < positions ? p0 + i : positions - 1;   /* a short last tile repeats its last position */ \
        xp[i] = x + xoff[p]; at[i] = yoff[p];                                                                  \
        for (int b = 0; b < OV; b++) acc[i][b] = (vf_##SUFFIX){0};                                             \
    }                                                                                                          \
    for (long c = 0; c < C; c++) {                                                                             \
        const float *wc = wT + c * TAPS * O + o0;                                                              \
        long base = c * plane;                                                                                 \
        for (int t = 0; t < TAPS; t++) {                                                                       \
            vf_##SUFFIX wv[OV];                                                                                \
            for (int b = 0; b < OV; b++) memcpy(&wv[b], wc + t * O + b * VL, VL * 4);                         \
            long tap = base + (t / 3) * row + t % 3;                                                           \
            for (int i = 0; i < PT; i++) {                                                                     \
                float s = xp[i][tap];                                                                          \
                for (int b = 0; b < OV; b++) acc[i][b] += s * wv[b];                                           \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    float tile[PT][OV * VL];                                                                                   \
    for (int i = 0; i < PT; i++) for (int b = 0; b < OV; b++) memcpy(&tile[i][b * VL], &acc[i][b], VL * 4);    \
    for (int o = 0; o < OV * VL; o++) {                                                                        \
        float *to = y->out + (o0 + o) * y->channelStride;                                                      \
        for (int i = 0; i < PT; i++) to[at[i]] = epilogue(y, o0 + o, at[i], tile[i][o]);                       \
    }                                                                                                          \
}                                                                                                              \
TARGET static void conv_by_position_##SUFFIX(const float *x, long C, long plane, long row, const long *xoff,   \
        long positions, const float *wT, long O, const bissl_output *y, const long *yoff) {                    \
    /* output channels outermost: one tile's weights (C * 9 * OV vectors) stay in cache over all positions */ \
    if (VL == 16 && O % (4 * VL) == 0) {                                                                      \
        for (long o0 = 0; o0 < O; o0 += 4 * VL)                                                               \
            for (long p0 = 0; p0 < positions; p0 += 4)                                                        \
                ctile_##SUFFIX(4, 4, x, C, plane, row, xoff, p0, positions, wT, O, o0, y, yoff); \
        return;                                                                                                \
    }                                                                                                          \
    const int PT = VL == 16 ? 8 : 4;                                                                           \
    for (long o0 = 0; o0 < O; ) {                                                                              \
        if (o0 + 2 * VL <= O) {                                                                                \
            for (long p0 = 0; p0 < positions; p0 += PT)                                                       \
                ctile_##SUFFIX(PT, 2, x, C, plane, row, xoff, p0, positions, wT, O, o0, y, yoff); \
            o0 += 2 * VL;                                                                                      \
        } else {                                                                                               \
            for (long p0 = 0; p0 < positions; p0 += PT)                                                       \
                ctile_##SUFFIX(PT, 1, x, C, plane, row, xoff, p0, positions, wT, O, o0, y, yoff); \
            o0 += VL;                                                                                          \
        }                                                                                                      \
    }                                                                                                          \
}

#if defined(__x86_64__)
KERNELS(avx2, __attribute__((target("avx2,fma"))), 8, 1)
KERNELS(avx512, __attribute__((target("avx512f,fma"))), 16, 2)
POSITION_KERNELS(avx2, __attribute__((target("avx2,fma"))), 8, 1)
POSITION_KERNELS(avx512, __attribute__((target("avx512f,fma"))), 16, 2)
CORRELATION_BY_POSITION(avx2, __attribute__((target("avx2,fma"))), 8)
CORRELATION_BY_POSITION(avx512, __attribute__((target("avx512f,fma"))), 16)
#endif

// The correlation read from the NCHW planes themselves (no padded copy): vectors of VL consecutive positions
// of one image's plane, tap (i, j) of a vector one load from `x + q0 + (i - 1) W + (j - 1)` whose lanes
// outside the plane (the padding: rows above and below, the column left of column 0 and right of column
// W - 1) are masked off (read as 0, never touched: masked loads do not fault). The masks of each vector
// (9 taps, then the vector's lanes inside the plane) come from a table made once per call. A tile is the same
// vector of T images x OB output channels (OB T accumulators), so its T loads of a tap share one mask, loaded
// once per tile (not once per load and channel); the weights repacked to [C][O][9], so a tile's broadcasts read
// one pointer per channel at fixed offsets. Each output summed over c then the taps, each multiply-add fused (the
// additions of `CORRELATION_BY_POSITION`), then stored through the epilogue with the vector's mask.
#define MASKS_PER_VECTOR 10
#define PLANES_KERNEL(SUFFIX, TARGET, VL, VEC, MASKT, MASK_AT, LOADM, STOREM, SET1, FMA, ADD, RELU, MAXT, MAXACC)  \
TARGET static inline __attribute__((always_inline)) void ptile_##SUFFIX(const int T, const int OB, const int S2,  \
        const float *const *xc, long C, long W, long S, long q0, const MASKT *masks, const float *wT, long O,    \
        long o0, const bissl_output *y, float *const *out, const float *const *res) {                          \
    VEC acc[MAXACC];                                                                                           \
    MASKT m[TAPS + 1];                                                                                         \
    for (int t = 0; t <= TAPS; t++) m[t] = MASK_AT(masks, 0, t);                                               \
    for (int i = 0; i < OB * T; i++) acc[i] = SET1(0.0f);                                                      \
    for (long c = 0; c < C; c++) {                                                                             \
        const float *wc = wT + (c * O + o0) * TAPS;                                                            \
        const float *xp[MAXT];                                                                                 \
        for (int k = 0; k < T; k++) xp[k] = xc[c * MAXT + k] + q0;                                             \
        /* the rows of taps a loop (unrolled, the compiler hoists all 9 T loads and spills), each row's 3 taps unrolled */ \
        _Pragma("clang loop unroll(disable)")                                                                  \
        for (int i = 0; i < 3; i++) {                                                                          \
            /* stride 1: tap (i, j) at (i - 1) W + j - 1; stride 2 (S2, the phase planes of S floats, plane  \
               a 2 + b holding rows 2 r + a, columns 2 s + b): rows i = 0, 1, 2 in phases 1, 0, 1 at row offsets \
               -1, 0, 0, columns likewise */                                                                   \
            long rowOff = S2 ? (i == 1 ? 0 : 2 * S) - (i == 0 ? W : 0) : (i - 1) * W;                          \
            for (int j = 0; j < 3; j++) {                                                                      \
                int t = i * 3 + j;                                                                             \
                long colOff = S2 ? (j == 1 ? 0 : S) - (j == 0) : j - 1;                                        \
                VEC xv[MAXT];                                                                                  \
                for (int k = 0; k < T; k++) xv[k] = LOADM(xp[k] + rowOff + colOff, m[t]);                      \
                for (int b = 0; b < OB; b++) {                                                                 \
                    VEC s = SET1(wc[b * TAPS + t]);                                                            \
                    for (int k = 0; k < T; k++) acc[b * T + k] = FMA(s, xv[k], acc[b * T + k]);               \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    for (int b = 0; b < OB; b++) {                                                                             \
        long at = (o0 + b) * y->channelStride + q0;                                                            \
        for (int k = 0; k < T; k++) {                                                                          \
            VEC v = acc[b * T + k];                                                                            \
            if (y->shift) {                                                                                    \
                v = ADD(v, SET1(y->shift[o0 + b]));                                                            \
                if (res[k]) v = ADD(v, LOADM(res[k] + at, m[TAPS]));                                           \
                if (y->relu) v = RELU(v);                                                                      \
            }                                                                                                  \
            STOREM(out[k] + at, m[TAPS], v);                                                                   \
        }                                                                                                      \
    }                                                                                                          \
}                                                                                                              \
TARGET static inline __attribute__((always_inline)) void planes_##SUFFIX(const int S2, const float *const *x,    \
        long terms, long cin, long P, long H, long W, long S, const float *wT, long O, const bissl_output *y,   \
        const MASKT *masks, const float **xc) {                                                                \
    long C = terms * cin, vectors = (H * W + VL - 1) / VL;                                                     \
    for (long i0 = 0; i0 < y->images; ) {                                                                      \
        long left = y->images - i0;                                                                            \
        int T = left >= MAXT ? MAXT : left >= 2 ? 2 : 1;                                                       \
        float *out[MAXT];                                                                                      \
        const float *res[MAXT];                                                                                \
        for (int k = 0; k < T; k++) {                                                                          \
            long i = i0 + k;                                                                                   \
            for (long c = 0; c < C; c++) xc[c * MAXT + k] = x[(c / cin) * y->images + i] + (c % cin) * P;     \
            out[k] = y->out + i * y->imageStride;                                                              \
            res[k] = y->residual ? y->residual + i * y->imageStride : 0;                                       \
        }                                                                                                      \
        for (long v = 0; v < vectors; v++) {                                                                   \
            const MASKT *mv = &MASK_AT(masks, v, 0);                                                           \
            for (long o0 = 0; o0 < O; ) {                                                                      \
                long rest = O - o0;                                                                            \
                if (T == MAXT) { ptile_##SUFFIX(MAXT, MAXACC / MAXT, S2, xc, C, W, S, v * VL, mv, wT, O, o0, y, out, res); o0 += MAXACC / MAXT; } \
                else if (T == 2 && rest >= MAXACC / 2) { ptile_##SUFFIX(2, MAXACC / 2, S2, xc, C, W, S, v * VL, mv, wT, O, o0, y, out, res); o0 += MAXACC / 2; } \
                else if (T == 2) { ptile_##SUFFIX(2, 4, S2, xc, C, W, S, v * VL, mv, wT, O, o0, y, out, res); o0 += 4; } \
                else if (rest >= MAXACC) { ptile_##SUFFIX(1, MAXACC, S2, xc, C, W, S, v * VL, mv, wT, O, o0, y, out, res); o0 += MAXACC; } \
                else if (rest >= 8) { ptile_##SUFFIX(1, 8, S2, xc, C, W, S, v * VL, mv, wT, O, o0, y, out, res); o0 += 8; } \
                else { ptile_##SUFFIX(1, 4, S2, xc, C, W, S, v * VL, mv, wT, O, o0, y, out, res); o0 += 4; }         \
            }                                                                                                  \
        }                                                                                                      \
        i0 += T;                                                                                               \
    }                                                                                                          \
}                                                                                                              \
TARGET static void planes1_##SUFFIX(const float *const *x, long terms, long cin, long H, long W, const float *wT, \
        long O, const bissl_output *y, const MASKT *masks, const float **xc) {                                 \
    planes_##SUFFIX(0, x, terms, cin, H * W, H, W, 0, wT, O, y, masks, xc);                                    \
}                                                                                                              \
TARGET static void planes2_##SUFFIX(const float *const *x, long C, long Ho, long Wo, const float *wT, long O,    \
        const bissl_output *y, const MASKT *masks, const float **xc) {                                         \
    planes_##SUFFIX(1, x, 1, C, 4 * Ho * Wo, Ho, Wo, Ho * Wo, wT, O, y, masks, xc);                            \
}

#if defined(__x86_64__)
#define M512_AT(m, v, t) ((m)[(v) * MASKS_PER_VECTOR + (t)])
#define M512_LOAD(p, m) _mm512_maskz_loadu_ps((m), (p))
#define M512_STORE(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define M512_FMA(s, x, a) _mm512_fmadd_ps((s), (x), (a))
#define M512_RELU(v) _mm512_mask_mov_ps((v), _mm512_cmp_ps_mask((v), _mm512_setzero_ps(), _CMP_LE_OQ), _mm512_setzero_ps())
PLANES_KERNEL(avx512, __attribute__((target("avx512f,fma"))), 16, __m512, __mmask16, M512_AT, M512_LOAD, M512_STORE,
              _mm512_set1_ps, M512_FMA, _mm512_add_ps, M512_RELU, 4, 16)
#define M256_AT(m, v, t) ((m)[(v) * MASKS_PER_VECTOR + (t)])
#define M256_LOAD(p, m) _mm256_maskload_ps((p), (m))
#define M256_STORE(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define M256_FMA(s, x, a) _mm256_fmadd_ps((s), (x), (a))
#define M256_RELU(v) _mm256_blendv_ps((v), _mm256_setzero_ps(), _mm256_cmp_ps((v), _mm256_setzero_ps(), _CMP_LE_OQ))
PLANES_KERNEL(avx2, __attribute__((target("avx2,fma"))), 8, __m256, __m256i, M256_AT, M256_LOAD, M256_STORE,
              _mm256_set1_ps, M256_FMA, _mm256_add_ps, M256_RELU, 2, 8)
#endif

// Bit l of `bits[v * 10 + t]` (t < 9): output position v VL + l of the (H - 1) / s + 1 x (W - 1) / s + 1 output
// plane of an H x W input plane at stride s reads inside the input plane at tap t; of `bits[v * 10 + 9]`: the
// position is in the output plane.
static void plane_mask_bits(long H, long W, long s, int VL, long vectors, unsigned *bits) {
    long Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1;
    for (long v = 0; v < vectors; v++) {
        for (int t = 0; t <= TAPS; t++) bits[v * MASKS_PER_VECTOR + t] = 0;
        for (int l = 0; l < VL; l++) {
            long q = v * VL + l;
            if (q >= Ho * Wo) break;
            long r = q / Wo, col = q % Wo;
            bits[v * MASKS_PER_VECTOR + TAPS] |= 1u << l;
            for (int t = 0; t < TAPS; t++) {
                long i = s * r + t / 3 - 1, j = s * col + t % 3 - 1;
                if (i >= 0 && i < H && j >= 0 && j < W) bits[v * MASKS_PER_VECTOR + t] |= 1u << l;
            }
        }
    }
}

// The stride-2 kernel's input: for image i and channel c (channel t * channels + c of the stacked terms: plane c
// of `x[t * images + i]`, H x W), 4 phase planes of Ho x Wo at `dst + (i * C + c) * 4 Ho Wo`, plane a 2 + b
// holding x[2 r + a][2 s + b] (0 past the input's last row or column, which the masks never read).
static void phase_planes(const float *const *x, long terms, long channels, long images, long H, long W, float *dst) {
    long Ho = (H + 1) / 2, Wo = (W + 1) / 2, S = Ho * Wo, C = terms * channels, half = W / 2;
    for (long i = 0; i < images; i++)
        for (long c = 0; c < C; c++) {
            const float *src = x[(c / channels) * images + i] + (c % channels) * H * W;
            float *d = dst + (i * C + c) * 4 * S;
            for (long row = 0; row < 2 * Ho; row++) {
                float *even = d + (row % 2) * 2 * S + (row / 2) * Wo, *odd = even + S;
                if (row == H) {   // odd H: the odd phases' last row is past the plane
                    memset(even, 0, (size_t)Wo * sizeof *even);
                    memset(odd, 0, (size_t)Wo * sizeof *odd);
                    continue;
                }
                const float *r = src + row * W;
                for (long q = 0; q < half; q++) { even[q] = r[2 * q]; odd[q] = r[2 * q + 1]; }
                if (W % 2) { even[half] = r[W - 1]; odd[half] = 0; }
            }
        }
}

void bissl_conv3x3_planes(int level, const float *const *x, long terms, long channels, long height, long width,
                          long stride, const float *w, long outChannels, const bissl_output *y) {
#if defined(__x86_64__)
    if (level != BISSL_LEVEL_AVX512 && level != BISSL_LEVEL_AVX2) return;   // no kernel for this level (see the header)
    if (stride != 1 && stride != 2) return;
    int VL = level == BISSL_LEVEL_AVX512 ? 16 : 8;
    long C = terms * channels, O = outChannels, Ho = (height - 1) / stride + 1, Wo = (width - 1) / stride + 1;
    long vectors = (Ho * Wo + VL - 1) / VL, entries = vectors * MASKS_PER_VECTOR;
    unsigned *bits = malloc((size_t)entries * sizeof *bits);
    const float **xc = malloc((size_t)(C * 4) * sizeof *xc);   // [C][MAXT] plane pointers of a tile's images
    float *wT = malloc((size_t)(C * O * TAPS) * sizeof *wT);    // [C][O][9]
    for (long o = 0; o < O; o++)
        for (long c = 0; c < C; c++) memcpy(wT + (c * O + o) * TAPS, w + (o * C + c) * TAPS, TAPS * sizeof *wT);
    plane_mask_bits(height, width, stride, VL, vectors, bits);
    float *phases = 0;
    const float **px = 0;   // stride 2: image i's phase planes
    if (stride == 2) {
        phases = malloc((size_t)(y->images * C * 4 * Ho * Wo) * sizeof *phases);
        px = malloc((size_t)y->images * sizeof *px);
        phase_planes(x, terms, channels, y->images, height, width, phases);
        for (long i = 0; i < y->images; i++) px[i] = phases + i * C * 4 * Ho * Wo;
    }
    if (level == BISSL_LEVEL_AVX512) {
        __mmask16 *m = malloc((size_t)entries * sizeof *m);
        for (long e = 0; e < entries; e++) m[e] = (__mmask16)bits[e];
        if (stride == 1) planes1_avx512(x, terms, channels, height, width, wT, O, y, m, xc);
        else planes2_avx512(px, C, Ho, Wo, wT, O, y, m, xc);
        free(m);
    } else {
        __m256i *m = aligned_alloc(32, (size_t)entries * sizeof *m);   // a mask's 8 lanes each 0 or -1
        for (long e = 0; e < entries; e++) {
            int lanes[8];
            for (int l = 0; l < 8; l++) lanes[l] = (bits[e] >> l) & 1 ? -1 : 0;
            memcpy(&m[e], lanes, sizeof lanes);
        }
        if (stride == 1) planes1_avx2(x, terms, channels, height, width, wT, O, y, m, xc);
        else planes2_avx2(px, C, Ho, Wo, wT, O, y, m, xc);
        free(m);
    }
    free(bits);
    free(xc);
    free(wT);
    free(phases);
    free(px);
#else
    (void)level; (void)x; (void)terms; (void)channels; (void)height; (void)width; (void)stride; (void)w;
    (void)outChannels; (void)y;
#endif
}

int bissl_kernels_max_level(void) {
#if defined(__x86_64__)
    return BISSL_LEVEL_AVX512;
#else
    return BISSL_LEVEL_BASELINE;
#endif
}

void bissl_conv3x3_weight_gradient(int level, const float *dy, long outChannels, long dyStride,
                                   const float *x, long channels, long plane, long row, long count, float *dw) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512) { grad_avx512(dy, outChannels, dyStride, x, channels, plane, row, count, dw); return; }
    if (level == BISSL_LEVEL_AVX2) { grad_avx2(dy, outChannels, dyStride, x, channels, plane, row, count, dw); return; }
#endif
    (void)level; (void)dy; (void)outChannels; (void)dyStride; (void)x; (void)channels; (void)plane; (void)row; (void)count;
    (void)dw;   // no kernel for this level (see the header)
}

void bissl_conv3x3_weight_gradient_by_position(int level, const float *dyT, long outChannels, const float *x,
                                               long channels, long plane, long row, const long *xoff,
                                               long positions, float *dwT) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512 && outChannels % 16 == 0) {
        wgrad_by_position_avx512(dyT, outChannels, x, channels, plane, row, xoff, positions, dwT);
        return;
    }
    if (level >= BISSL_LEVEL_AVX2) { wgrad_by_position_avx2(dyT, outChannels, x, channels, plane, row, xoff, positions, dwT); return; }
#endif
    (void)level; (void)dyT; (void)outChannels; (void)x; (void)channels; (void)plane; (void)row; (void)xoff;
    (void)positions; (void)dwT;   // no kernel for this level (see the header)
}

void bissl_conv3x3_by_position(int level, const float *x, long channels, long plane, long row, const long *xoff,
                               long positions, const float *wT, long outChannels, const bissl_output *y,
                               const long *yoff) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512 && outChannels % 16 == 0) {
        conv_by_position_avx512(x, channels, plane, row, xoff, positions, wT, outChannels, y, yoff);
        return;
    }
    if (level >= BISSL_LEVEL_AVX2) {
        conv_by_position_avx2(x, channels, plane, row, xoff, positions, wT, outChannels, y, yoff);
        return;
    }
#endif
    (void)level; (void)x; (void)channels; (void)plane; (void)row; (void)xoff; (void)positions; (void)wT;
    (void)outChannels; (void)y; (void)yoff;   // no kernel for this level (see the header)
}

void bissl_pad_planes(const float *const *images, long count, long channels, long height, long width,
                      long plane, float *dst) {
    long row = width + 2, used = (count * (height + 1) + 1) * row;
    for (long c = 0; c < channels; c++) {
        float *p = dst + c * plane;
        memset(p, 0, (size_t)row * 4);
        p += row;
        for (long i = 0; i < count; i++) {
            const float *src = images[i] + c * height * width;
            for (long r = 0; r < height; r++, p += row, src += width) {
                p[0] = 0;
                memcpy(p + 1, src, (size_t)width * 4);
                p[width + 1] = 0;
            }
            memset(p, 0, (size_t)row * 4);
            p += row;
        }
        memset(dst + c * plane + used, 0, (size_t)(plane - used) * 4);
    }
}
