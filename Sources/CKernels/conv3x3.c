// 3x3 cross-correlation kernels (the declarations and their contracts are in include/CKernels.h).
// Each body is instantiated per vector width with GCC/Clang vector extensions. Two kinds:
// - vectors across positions (`KERNELS(suffix, target, lanes, OB, T, WOB)`, stride 1): OB output channels x
//   T vectors of positions per tile (OB*T accumulators held in registers: 16 of 32 zmm at AVX-512, 8 of
//   16 ymm at AVX2), and the weight gradient WOB output channels x 9 taps at a time;
// - vectors across output channels (`POSITION_KERNELS`, `CORRELATION_BY_POSITION`, any stride): listed
//   output positions, each x value broadcast, weights and output gradients with the output channel innermost.
#include "CKernels.h"
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

#define KERNELS(SUFFIX, TARGET, VL, OB, T, WOB)                                                                \
typedef float vf_##SUFFIX __attribute__((vector_size(VL * 4)));                                               \
TARGET static void conv_##SUFFIX(const float *x, long C, long plane, long row, const float *w, long O,          \
                                 float *out, long outStride, long count) {                                     \
    long off[TAPS];                                                                                            \
    for (int t = 0; t < TAPS; t++) off[t] = (t / 3) * row + t % 3;                                             \
    for (long q0 = 0; q0 < count; q0 += T * VL) {                                                              \
        for (long o0 = 0; o0 < O; o0 += OB) {                                                                  \
            vf_##SUFFIX acc[OB][T];                                                                            \
            for (int b = 0; b < OB; b++) for (int k = 0; k < T; k++) acc[b][k] = (vf_##SUFFIX){0};             \
            for (long c = 0; c < C; c++) {                                                                     \
                const float *xc = x + c * plane + q0;                                                          \
                const float *wc = w + (o0 * C + c) * TAPS;                                                     \
                for (int t = 0; t < TAPS; t++) {                                                               \
                    vf_##SUFFIX xv[T];                                                                         \
                    for (int k = 0; k < T; k++) memcpy(&xv[k], xc + off[t] + k * VL, VL * 4);                  \
                    for (int b = 0; b < OB; b++) {                                                             \
                        float s = wc[b * C * TAPS + t];                                                        \
                        for (int k = 0; k < T; k++) acc[b][k] += s * xv[k];                                    \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
            for (int b = 0; b < OB; b++)                                                                       \
                for (int k = 0; k < T; k++) memcpy(out + (o0 + b) * outStride + q0 + k * VL, &acc[b][k], VL * 4); \
        }                                                                                                      \
    }                                                                                                          \
}                                                                                                              \
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
// taps as `KERNELS` does, then written to the positions' NCHW places through a small tile.
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
KERNELS(avx2, __attribute__((target("avx2,fma"))), 8, 4, 2, 1)
KERNELS(avx512, __attribute__((target("avx512f,fma"))), 16, 4, 4, 2)
POSITION_KERNELS(avx2, __attribute__((target("avx2,fma"))), 8, 1)
POSITION_KERNELS(avx512, __attribute__((target("avx512f,fma"))), 16, 2)
CORRELATION_BY_POSITION(avx2, __attribute__((target("avx2,fma"))), 8)
CORRELATION_BY_POSITION(avx512, __attribute__((target("avx512f,fma"))), 16)
#endif

int bissl_kernels_max_level(void) {
#if defined(__x86_64__)
    return BISSL_LEVEL_AVX512;
#else
    return BISSL_LEVEL_BASELINE;
#endif
}

void bissl_conv3x3(int level, const float *x, long channels, long plane, long row,
                   const float *w, long outChannels, float *out, long outStride, long count) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512) { conv_avx512(x, channels, plane, row, w, outChannels, out, outStride, count); return; }
    if (level == BISSL_LEVEL_AVX2) { conv_avx2(x, channels, plane, row, w, outChannels, out, outStride, count); return; }
#endif
    (void)level; (void)x; (void)channels; (void)plane; (void)row; (void)w; (void)outChannels; (void)out; (void)outStride;
    (void)count;   // no kernel for this level (see the header)
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

// The padded planes, AVX-512: each padded row [0, x_0 .. x_{w-1}, 0] as masked 16-lane loads from one float
// before the source row (the lanes outside the row are not read) and masked stores.
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void pad_avx512(const float *const *images, long count, long channels,
        long height, long width, long plane, float *dst) {
    long row = width + 2, used = (count * (height + 1) + 1) * row;
    for (long c = 0; c < channels; c++) {
        float *p = dst + c * plane;
        memset(p, 0, (size_t)row * 4);
        p += row;
        for (long i = 0; i < count; i++) {
            const float *src = images[i] + c * height * width;
            for (long r = 0; r < height; r++, p += row, src += width) {
                for (long k = 0; k < row; k += 16) {
                    long hi = width + 1 - k, lo = 1 - k;   // lanes j with lo <= j < hi hold x_{k + j - 1}
                    __mmask16 load = (__mmask16)((hi >= 16 ? 0xFFFF : hi <= 0 ? 0 : (1 << hi) - 1) & ~(lo <= 0 ? 0 : (1 << lo) - 1));
                    __mmask16 store = (__mmask16)(row - k >= 16 ? 0xFFFF : (1 << (row - k)) - 1);
                    _mm512_mask_storeu_ps(p + k, store, _mm512_maskz_loadu_ps(load, src - 1 + k));
                }
            }
            memset(p, 0, (size_t)row * 4);
            p += row;
        }
        memset(dst + c * plane + used, 0, (size_t)(plane - used) * 4);
    }
}
#endif

void bissl_pad_planes(int level, const float *const *images, long count, long channels, long height, long width,
                      long plane, float *dst) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512) { pad_avx512(images, count, channels, height, width, plane, dst); return; }
#endif
    (void)level;
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

// The grid's real outputs into NCHW through the epilogue, AVX-512: each output row as masked 16-lane
// loads (grid, residual) and stores, in the order of the output (image, channel, row).
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void grid_store_avx512(const float *grid, long gridStride, long row,
        long channels, const bissl_output *y) {
    const __m512 zero = _mm512_setzero_ps();
    for (long n = 0; n < y->images; n++)
        for (long o = 0; o < channels; o++) {
            __m512 shift = _mm512_set1_ps(y->shift ? y->shift[o] : 0);
            long at = n * y->imageStride + o * y->channelStride;
            for (long r = 0; r < y->height; r++, at += y->width) {
                const float *from = grid + o * gridStride + (n * (y->height + 1) + r) * row;
                for (long k = 0; k < y->width; k += 16) {
                    __mmask16 m = (__mmask16)(y->width - k >= 16 ? 0xFFFF : (1 << (y->width - k)) - 1);
                    __m512 v = _mm512_maskz_loadu_ps(m, from + k);
                    if (y->shift) {
                        v = _mm512_add_ps(v, shift);
                        if (y->residual) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, y->residual + at + k));
                        if (y->relu) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LE_OQ), zero);
                    }
                    _mm512_mask_storeu_ps(y->out + at + k, m, v);
                }
            }
        }
}
#endif

void bissl_grid_store(int level, const float *grid, long gridStride, long row, long channels, const bissl_output *y) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512) { grid_store_avx512(grid, gridStride, row, channels, y); return; }
#endif
    (void)level;
    for (long n = 0; n < y->images; n++)
        for (long o = 0; o < channels; o++)
            for (long r = 0; r < y->height; r++) {
                const float *from = grid + o * gridStride + (n * (y->height + 1) + r) * row;
                long at = n * y->imageStride + r * y->width;   // channel 0's offset
                float *to = y->out + o * y->channelStride + at;
                for (long i = 0; i < y->width; i++) to[i] = epilogue(y, o, at + i, from[i]);
            }
}
