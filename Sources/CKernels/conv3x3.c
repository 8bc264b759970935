// 3x3 cross-correlation kernels (the declarations and their contracts are in include/CKernels.h).
// One body, instantiated per vector width with GCC/Clang vector extensions: KERNELS(suffix, target,
// lanes, OB, T, WOB) computes OB output channels x T vectors of positions per tile (OB*T accumulators
// held in registers: 16 of 32 zmm at AVX-512, 8 of 16 ymm at AVX2), and the weight gradient WOB output
// channels x 9 taps at a time.
#include "CKernels.h"
#include <string.h>

#define TAPS 9

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

#if defined(__x86_64__)
KERNELS(avx2, __attribute__((target("avx2,fma"))), 8, 4, 2, 1)
KERNELS(avx512, __attribute__((target("avx512f,fma"))), 16, 4, 4, 2)
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
