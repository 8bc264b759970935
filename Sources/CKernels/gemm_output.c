// The GEMM rows' move into NCHW through the inference epilogue (include/gemm_output.h), one body per
// vector level (inlined into a function compiled for the level's target). Additions and a comparison per
// value, in the order of the Swift epilogue they replace: the same values at every level.
#include "CKernels.h"

static inline __attribute__((always_inline)) void store_body(const float *rows, long ris, long rs, long O,
                                                             const bissl_output *y) {
    const long P = y->height * y->width;
    for (long n = 0; n < y->images; n++) {
        for (long o = 0; o < O; o++) {
            const float *src = rows + n * ris + o * rs;
            const long at = n * y->imageStride + o * y->channelStride;
            float *dst = y->out + at;
            if (!y->shift) {
                if (dst != src) for (long q = 0; q < P; q++) dst[q] = src[q];
                continue;
            }
            const float b = y->shift[o];
            if (y->residual) {
                const float *r = y->residual + at;
                if (y->relu) {
                    for (long q = 0; q < P; q++) { float v = src[q] + b + r[q]; dst[q] = v <= 0 ? 0.0f : v; }
                } else {
                    for (long q = 0; q < P; q++) dst[q] = src[q] + b + r[q];
                }
            } else if (y->relu) {
                for (long q = 0; q < P; q++) { float v = src[q] + b; dst[q] = v <= 0 ? 0.0f : v; }
            } else {
                for (long q = 0; q < P; q++) dst[q] = src[q] + b;
            }
        }
    }
}

#define STORE_FUNCTION(SUFFIX, TARGET)                                                                           \
TARGET static void store_##SUFFIX(const float *rows, long ris, long rs, long O, const bissl_output *y) {          \
    store_body(rows, ris, rs, O, y);                                                                              \
}

STORE_FUNCTION(baseline, )
#if defined(__x86_64__)
STORE_FUNCTION(avx2, __attribute__((target("avx2,fma"))))
STORE_FUNCTION(avx512, __attribute__((target("avx512f,fma"))))
#endif

void bissl_store_rows(int level, const float *rows, long rowImageStride, long rowStride, long channels,
                      const bissl_output *y) {
#if defined(__x86_64__)
    if (level == BISSL_LEVEL_AVX512) { store_avx512(rows, rowImageStride, rowStride, channels, y); return; }
    if (level == BISSL_LEVEL_AVX2) { store_avx2(rows, rowImageStride, rowStride, channels, y); return; }
#endif
    store_baseline(rows, rowImageStride, rowStride, channels, y);
}
