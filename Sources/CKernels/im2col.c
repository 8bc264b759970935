// im2col and the inference max pool (include/im2col.h), one body per vector level: the body is inlined
// into a function compiled for the level's target, so the compiler vectorises the copies, the stride-2
// gathers and the window comparisons with that level's instructions. Only moves and comparisons: the
// same values at every level.
#include "CKernels.h"
#include <string.h>

/// a / b rounded toward negative infinity (b > 0).
static inline long floor_div(long a, long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static inline __attribute__((always_inline)) void zero(float *d, long n) { for (long t = 0; t < n; t++) d[t] = 0; }

static inline __attribute__((always_inline)) void im2col_body(const float *const *images, long count, long C, long H,
                                                              long W, long k, long s, long pad, long ho, long wo,
                                                              float *cols) {
    const long P = ho * wo, width = count * P;
    for (long c = 0; c < C; c++) {
        for (long i = 0; i < k; i++) {
            // valid output rows of tap row i: 0 <= oh s - pad + i < H
            const long r0 = pad - i > 0 ? (pad - i + s - 1) / s : 0;
            long r1 = floor_div(H - 1 + pad - i, s) + 1;
            if (r1 > ho) r1 = ho;
            for (long j = 0; j < k; j++) {
                const long c0 = pad - j > 0 ? (pad - j + s - 1) / s : 0;
                long c1 = floor_div(W - 1 + pad - j, s) + 1;
                if (c1 > wo) c1 = wo;
                float *row = cols + ((c * k + i) * k + j) * width;
                for (long n = 0; n < count; n++) {
                    float *dst = row + n * P;
                    const float *plane = images[n] + c * H * W;
                    if (r0 >= r1 || c0 >= c1) { zero(dst, P); continue; }
                    zero(dst, r0 * wo);
                    zero(dst + r1 * wo, (ho - r1) * wo);
                    if (s == 1 && wo == W) {
                        // output (oh, ow) reads plane[oh W + ow + shift]: one run, then the wrapped edge columns zeroed
                        const long shift = (i - pad) * W + (j - pad);
                        const long first = r0 * wo + c0, last = (r1 - 1) * wo + c1;
                        memcpy(dst + first, plane + first + shift, (size_t)(last - first) * sizeof(float));
                        if (c1 - c0 < wo) {
                            for (long oh = r0; oh < r1; oh++) {
                                float *r = dst + oh * wo;
                                for (long ow = 0; ow < c0; ow++) r[ow] = 0;
                                for (long ow = c1; ow < wo; ow++) r[ow] = 0;
                            }
                        }
                        continue;
                    }
                    for (long oh = r0; oh < r1; oh++) {
                        float *r = dst + oh * wo;
                        const float *src = plane + (oh * s - pad + i) * W;   // src[ow s + j - pad], ow in [c0, c1)
                        for (long ow = 0; ow < c0; ow++) r[ow] = 0;
                        for (long ow = c1; ow < wo; ow++) r[ow] = 0;
                        const long off = j - pad;
                        if (s == 1) {
                            for (long ow = c0; ow < c1; ow++) r[ow] = src[ow + off];
                        } else if (s == 2) {
                            for (long ow = c0; ow < c1; ow++) r[ow] = src[2 * ow + off];
                        } else {
                            for (long ow = c0; ow < c1; ow++) r[ow] = src[ow * s + off];
                        }
                    }
                }
            }
        }
    }
}

/// `v > best || v != v`: MaxPool2d's rule (the first maximum kept, NaN propagated).
static inline __attribute__((always_inline)) float pool_max(float best, float v) { return (v > best || v != v) ? v : best; }

static inline __attribute__((always_inline)) void maxpool_body(const float *x, long planes, long H, long W, long k, long s,
                                                               long pad, long ho, long wo, float *y) {
    // output columns whose window lies inside the plane: w0 = ow s - pad >= 0 and w0 + k <= W
    long lo = (pad + s - 1) / s, hi = W - k + pad >= 0 ? (W - k + pad) / s + 1 : 0;
    if (hi > wo) hi = wo;
    if (lo > hi) lo = hi;
    for (long p = 0; p < planes; p++) {
        const float *src = x + p * H * W;
        float *out = y + p * ho * wo;
        for (long oh = 0; oh < ho; oh++) {
            const long h0 = oh * s - pad, ra = h0 > 0 ? h0 : 0, rb = h0 + k < H ? h0 + k : H;
            float *o = out + oh * wo;
            // a window of k whole rows in the middle: its taps in row-major order, for consecutive outputs
            if (k == 3 && s == 2 && rb - ra == 3) {
                const float *a = src + h0 * W - pad, *b = a + W, *c = b + W;
                for (long ow = lo; ow < hi; ow++) {
                    const long q = 2 * ow;
                    float m = a[q];
                    m = pool_max(m, a[q + 1]); m = pool_max(m, a[q + 2]);
                    m = pool_max(m, b[q]); m = pool_max(m, b[q + 1]); m = pool_max(m, b[q + 2]);
                    m = pool_max(m, c[q]); m = pool_max(m, c[q + 1]); m = pool_max(m, c[q + 2]);
                    o[ow] = m;
                }
            }
            const int fast = k == 3 && s == 2 && rb - ra == 3;
            for (long ow = 0; ow < wo; ow++) {
                if (fast && ow >= lo && ow < hi) { ow = hi - 1; continue; }
                const long w0 = ow * s - pad, ca = w0 > 0 ? w0 : 0, cb = w0 + k < W ? w0 + k : W;
                float m = src[ra * W + ca];
                for (long r = ra; r < rb; r++) {
                    for (long q = (r == ra ? ca + 1 : ca); q < cb; q++) m = pool_max(m, src[r * W + q]);
                }
                o[ow] = m;
            }
        }
    }
}

#define LEVEL_FUNCTIONS(SUFFIX, TARGET)                                                                          \
TARGET static void im2col_##SUFFIX(const float *const *images, long count, long C, long H, long W, long k, long s,  \
                                   long pad, long ho, long wo, float *cols) {                                       \
    im2col_body(images, count, C, H, W, k, s, pad, ho, wo, cols);                                                  \
}                                                                                                                   \
TARGET static void maxpool_##SUFFIX(const float *x, long planes, long H, long W, long k, long s, long pad, long ho, \
                                    long wo, float *y) {                                                           \
    maxpool_body(x, planes, H, W, k, s, pad, ho, wo, y);                                                           \
}

LEVEL_FUNCTIONS(baseline, )
#if defined(__x86_64__)
LEVEL_FUNCTIONS(avx2, __attribute__((target("avx2,fma"))))
LEVEL_FUNCTIONS(avx512, __attribute__((target("avx512f,fma"))))
#endif

void bissl_im2col(int level, const float *const *images, long count, long channels, long height, long width,
                  long kernel, long stride, long padding, long outHeight, long outWidth, float *cols) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512) {
        im2col_avx512(images, count, channels, height, width, kernel, stride, padding, outHeight, outWidth, cols);
        return;
    }
    if (level == BISSL_LEVEL_AVX2) {
        im2col_avx2(images, count, channels, height, width, kernel, stride, padding, outHeight, outWidth, cols);
        return;
    }
#endif
    im2col_baseline(images, count, channels, height, width, kernel, stride, padding, outHeight, outWidth, cols);
}

void bissl_maxpool_infer(int level, const float *x, long planes, long height, long width, long kernel, long stride,
                         long padding, long outHeight, long outWidth, float *y) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512) {
        maxpool_avx512(x, planes, height, width, kernel, stride, padding, outHeight, outWidth, y);
        return;
    }
    if (level == BISSL_LEVEL_AVX2) {
        maxpool_avx2(x, planes, height, width, kernel, stride, padding, outHeight, outWidth, y);
        return;
    }
#endif
    maxpool_baseline(x, planes, height, width, kernel, stride, padding, outHeight, outWidth, y);
}
