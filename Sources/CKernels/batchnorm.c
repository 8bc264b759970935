// BatchNorm2d's per-channel passes (declarations, contracts and the order of additions in
// include/batchnorm.h). Each body is written once on 16-float vectors (GCC/Clang vector extensions) and
// compiled three times: for AVX-512F (one zmm per vector), AVX2 (two ymm) and the x86-64 baseline (four
// xmm), so every level performs the same float operations in the same order.
#include "CKernels.h"
#include <string.h>

#pragma STDC FP_CONTRACT OFF

typedef float v16 __attribute__((vector_size(64)));
typedef int m16 __attribute__((vector_size(64)));

#define VL 16
#define BODY static inline __attribute__((always_inline))

// Unaligned loads and stores (the planes start anywhere), broadcasts, and the two ReLU selects, as macros:
// no function takes or returns a vector, so nothing depends on the vector calling convention.
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
#define load(p) ((v16)*(const v16u *)(p))
#define store(p, v) (*(v16u *)(p) = (v16u)(v))
#define splat(s) ((v16){0} + (float)(s))
/// ReLU's rule `v <= 0 ? 0 : v` (NaN kept).
#define relu(v) ((v16)((m16)(v) & ~((v) <= splat(0))))
/// `pre > 0 ? t : 0` (NaN pre drops).
#define gate(t, pre) ((v16)((m16)(t) & ((pre) > splat(0))))

/// The 16 lanes of `l` added pairwise: 16 -> 8 -> 4 -> 2 -> 1 (in place).
BODY float lanes(float *l) {
    for (int w = VL / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) l[j] = l[j] + l[j + w];
    return l[0];
}

// Planes of fewer than 32 values (2x2 to 5x5 maps) are all tail, one float add after another: there 16
// planes go at a time, lane k taking plane s + k's values in the same order (the same additions, so the same
// bits as one plane at a time), their sums then added to the double totals in plane order.
/// `*out` lane k = `q[k * stride + i]`.
BODY void gather(v16 *out, const float *q, long stride, long i) {
    float l[VL];
    for (int k = 0; k < VL; k++) l[k] = q[k * stride + i];
    memcpy(out, l, sizeof l);
}

/// `*total += ` lane 0, then lane 1, ... (planes in order).
BODY void add_lanes_in_order(double *total, const v16 *v) {
    float l[VL];
    memcpy(l, v, sizeof l);
    for (int k = 0; k < VL; k++) *total += l[k];
}

// A plane at 32x32 is one 4 KiB page, where the hardware prefetchers stop: the first pass over a channel's
// planes asks for the next plane's lines (`NEXT(q, i)`: the 32 floats at i of the plane after q's, or q's own
// for the last plane) while it sums this one. Prefetches change no value.
#define NEXT(q, i) do { __builtin_prefetch((q) + next + (i)); __builtin_prefetch((q) + next + (i) + VL); } while (0)

// One plane's float sums over 32 lanes (lo_: lanes 0-15, hi_: 16-31; added lane-wise then pairwise), then the tail. `TERM(i)` is the vector of 16 terms at i (vectors)
// and `SCALAR(i)` the one term at i (tail).
#define PLANE_SUM(RESULT, PLANE, TERM, SCALAR, PREFETCH)                                                        \
    do {                                                                                                       \
        long i_ = 0;                                                                                           \
        float t_ = 0;                                                                                          \
        if ((PLANE) >= 2 * VL) {                                                                               \
            v16 lo_ = {0}, hi_ = {0};                                                                          \
            for (; i_ + 2 * VL <= (PLANE); i_ += 2 * VL) { PREFETCH(i_); lo_ += TERM(i_); hi_ += TERM(i_ + VL); } \
            v16 s_ = lo_ + hi_;                                                                                \
            float l_[VL];                                                                                      \
            memcpy(l_, &s_, sizeof l_);                                                                        \
            t_ = lanes(l_);                                                                              \
        }                                                                                                      \
        for (; i_ < (PLANE); i_++) t_ += SCALAR(i_);                                                          \
        (RESULT) = t_;                                                                                         \
    } while (0)

BODY double sum_body(const float *x, long n, long stride, long plane) {
    double total = 0;
    long s = 0;
    if (plane < 2 * VL) {
        for (; s + VL <= n; s += VL) {
            v16 acc = {0}, v;
            for (long i = 0; i < plane; i++) { gather(&v, x + s * stride, stride, i); acc += v; }
            add_lanes_in_order(&total, &acc);
        }
    }
    for (; s < n; s++) {
        const float *p = x + s * stride;
        long next = s + 1 < n ? stride : 0;
        float t;
#define T(i) load(p + (i))
#define S(i) p[i]
#define P(i) NEXT(p, i)
        PLANE_SUM(t, plane, T, S, P);
#undef P
#undef T
#undef S
        total += t;
    }
    return total;
}

BODY double squared_deviation_body(const float *x, long n, long stride, long plane, float mean) {
    double total = 0;
    v16 m = splat(mean);
    long s = 0;
    if (plane < 2 * VL) {
        for (; s + VL <= n; s += VL) {
            v16 acc = {0}, v;
            for (long i = 0; i < plane; i++) { gather(&v, x + s * stride, stride, i); acc += (v - m) * (v - m); }
            add_lanes_in_order(&total, &acc);
        }
    }
    for (; s < n; s++) {
        const float *p = x + s * stride;
        float t;
#define T(i) ((load(p + (i)) - m) * (load(p + (i)) - m))
#define S(i) ((p[i] - mean) * (p[i] - mean))
#define P(i) ((void)0)
        PLANE_SUM(t, plane, T, S, P);
#undef P
#undef T
#undef S
        total += t;
    }
    return total;
}

BODY void scale_shift_body(const float *x, long n, long stride, long plane, float a, float b, int rectify, float *y) {
    v16 va = splat(a), vb = splat(b);
    for (long s = 0; s < n; s++) {
        const float *p = x + s * stride;
        float *q = y + s * stride;
        long i = 0;
        if (rectify) {
            for (; i + VL <= plane; i += VL) store(q + i, relu(load(p + i) * va + vb));
            for (; i < plane; i++) { float v = p[i] * a + b; q[i] = v <= 0 ? 0 : v; }
        } else {
            for (; i + VL <= plane; i += VL) store(q + i, load(p + i) * va + vb);
            for (; i < plane; i++) q[i] = p[i] * a + b;
        }
    }
}

BODY void scale_shift_add_relu_body(const float *x, long n, long stride, long plane, float a, float b, const float *r,
                                    float *y) {
    v16 va = splat(a), vb = splat(b);
    for (long s = 0; s < n; s++) {
        const float *p = x + s * stride, *q = r + s * stride;
        float *o = y + s * stride;
        long i = 0;
        for (; i + VL <= plane; i += VL) store(o + i, relu((load(p + i) * va + vb) + load(q + i)));
        for (; i < plane; i++) { float v = (p[i] * a + b) + q[i]; o[i] = v <= 0 ? 0 : v; }
    }
}

/// The 16 lanes of `*v` added pairwise (as `lanes`).
BODY float lanes_of(const v16 *v) {
    float l[VL];
    memcpy(l, v, sizeof l);
    return lanes(l);
}

/// dy at i (16 values, or one), through ReLU's backward rule when `gated`.
#define GATED(i) (gated ? gate(load(t + (i)), load(p + (i)) * va + vb) : load(t + (i)))
#define GATED1(i) (gated ? (p[i] * a + b > 0 ? t[i] : 0) : t[i])

BODY void gate_sums_body(const float *dy, long dystride, const float *x, long stride, long n, long plane, int gated,
                         float a, float b, float mean, float invStd, double sums[2]) {
    double sumDy = 0, sumDyXhat = 0;
    v16 va = splat(a), vb = splat(b), m = splat(mean);
    long s = 0;
    if (plane < 2 * VL) {
        for (; s + VL <= n; s += VL) {
            v16 sa = {0}, sb = {0}, tv, pv;
            for (long i = 0; i < plane; i++) {
                gather(&tv, dy + s * dystride, dystride, i);
                gather(&pv, x + s * stride, stride, i);
                v16 g = gated ? gate(tv, pv * va + vb) : tv;
                sa += g;
                sb += g * (pv - m);
            }
            sb = sb * splat(invStd);
            add_lanes_in_order(&sumDy, &sa);
            add_lanes_in_order(&sumDyXhat, &sb);
        }
    }
    for (; s < n; s++) {
        const float *t = dy + s * dystride, *p = x + s * stride;
        long next = s + 1 < n ? dystride : 0, nextX = s + 1 < n ? stride : 0;
        // both sums in one pass, each in the order of PLANE_SUM
        float sa = 0, sb = 0;
        long i = 0;
        if (plane >= 2 * VL) {
            v16 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
            for (; i + 2 * VL <= plane; i += 2 * VL) {
                NEXT(t, i);
                __builtin_prefetch(p + nextX + i);
                __builtin_prefetch(p + nextX + i + VL);
                v16 g0 = GATED(i), g1 = GATED(i + VL);
                a0 += g0;
                a1 += g1;
                b0 += g0 * (load(p + i) - m);
                b1 += g1 * (load(p + i + VL) - m);
            }
            a0 += a1;
            b0 += b1;
            sa = lanes_of(&a0);
            sb = lanes_of(&b0);
        }
        for (; i < plane; i++) {
            float g = GATED1(i);
            sa += g;
            sb += g * (p[i] - mean);
        }
        sumDy += sa;
        sumDyXhat += sb * invStd;
    }
    sums[0] = sumDyXhat;
    sums[1] = sumDy;
}

BODY void input_gradient_body(const float *dy, long dystride, const float *x, long stride, long n, long plane, int gated,
                              float a, float b, float mean, float invStd, float k, float meanDy, float meanDyXhat,
                              int batch, float *dx) {
    v16 va = splat(a), vb = splat(b);
    v16 vm = splat(mean), vs = splat(invStd), vk = splat(k), vmd = splat(meanDy), vmx = splat(meanDyXhat);
    for (long s = 0; s < n; s++) {
        const float *t = dy + s * dystride, *p = x + s * stride;
        float *o = dx + s * stride;
        long i = 0;
        if (batch) {
            for (; i + VL <= plane; i += VL)
                store(o + i, vk * ((GATED(i) - vmd) - ((load(p + i) - vm) * vs) * vmx));
            for (; i < plane; i++) o[i] = k * ((GATED1(i) - meanDy) - ((p[i] - mean) * invStd) * meanDyXhat);
        } else {
            for (; i + VL <= plane; i += VL) store(o + i, vk * GATED(i));
            for (; i < plane; i++) o[i] = k * GATED1(i);
        }
    }
}

// Each pass at each level: NAME_avx512, NAME_avx2 and NAME_baseline around NAME_body (inlined into each),
// and the choice among them by `level` (the baseline for any other value and on other architectures).
#if defined(__x86_64__)
#define LEVELS(NAME, RET, PARAMS, ARGS)                                                                        \
    __attribute__((target("avx512f"))) static RET NAME##_avx512 PARAMS { RET_##RET NAME##_body ARGS; }         \
    __attribute__((target("avx2"))) static RET NAME##_avx2 PARAMS { RET_##RET NAME##_body ARGS; }              \
    static RET NAME##_baseline PARAMS { RET_##RET NAME##_body ARGS; }
#define DISPATCH(RET, NAME, ARGS)                                                                              \
    do {                                                                                                       \
        if (level == BISSL_LEVEL_AVX512) { RET_##RET NAME##_avx512 ARGS; }                                     \
        else if (level == BISSL_LEVEL_AVX2) { RET_##RET NAME##_avx2 ARGS; }                                    \
        else { RET_##RET NAME##_baseline ARGS; }                                                               \
    } while (0)
#else
#define LEVELS(NAME, RET, PARAMS, ARGS)
#define DISPATCH(RET, NAME, ARGS) do { (void)level; RET_##RET NAME##_body ARGS; } while (0)
#endif
#define RET_double return
#define RET_void

LEVELS(sum, double, (const float *x, long n, long stride, long plane), (x, n, stride, plane))
LEVELS(squared_deviation, double, (const float *x, long n, long stride, long plane, float mean),
       (x, n, stride, plane, mean))
LEVELS(scale_shift, void, (const float *x, long n, long stride, long plane, float a, float b, int relu, float *y),
       (x, n, stride, plane, a, b, relu, y))
LEVELS(scale_shift_add_relu, void,
       (const float *x, long n, long stride, long plane, float a, float b, const float *r, float *y),
       (x, n, stride, plane, a, b, r, y))
LEVELS(gate_sums, void,
       (const float *dy, long dystride, const float *x, long stride, long n, long plane, int gated, float a, float b,
        float mean, float invStd, double *sums),
       (dy, dystride, x, stride, n, plane, gated, a, b, mean, invStd, sums))
LEVELS(input_gradient, void,
       (const float *dy, long dystride, const float *x, long stride, long n, long plane, int gated, float a, float b,
        float mean, float invStd, float k, float meanDy, float meanDyXhat, int batch, float *dx),
       (dy, dystride, x, stride, n, plane, gated, a, b, mean, invStd, k, meanDy, meanDyXhat, batch, dx))

double bissl_bn_sum(int level, const float *x, long n, long stride, long plane) {
    DISPATCH(double, sum, (x, n, stride, plane));
}

double bissl_bn_squared_deviation(int level, const float *x, long n, long stride, long plane, float mean) {
    DISPATCH(double, squared_deviation, (x, n, stride, plane, mean));
}

void bissl_bn_scale_shift(int level, const float *x, long n, long stride, long plane, float a, float b, int relu,
                          float *y) {
    DISPATCH(void, scale_shift, (x, n, stride, plane, a, b, relu, y));
}

void bissl_bn_scale_shift_add_relu(int level, const float *x, long n, long stride, long plane, float a, float b,
                                   const float *r, float *y) {
    DISPATCH(void, scale_shift_add_relu, (x, n, stride, plane, a, b, r, y));
}

void bissl_bn_gate_sums(int level, const float *dy, long dystride, const float *x, long stride, long n, long plane,
                        int gate, float a, float b, float mean, float invStd, double sums[2]) {
    DISPATCH(void, gate_sums, (dy, dystride, x, stride, n, plane, gate, a, b, mean, invStd, sums));
}

void bissl_bn_input_gradient(int level, const float *dy, long dystride, const float *x, long stride, long n, long plane,
                             int gate, float a, float b, float mean, float invStd, float k, float meanDy, float meanDyXhat,
                             int batch, float *dx) {
    DISPATCH(void, input_gradient,
             (dy, dystride, x, stride, n, plane, gate, a, b, mean, invStd, k, meanDy, meanDyXhat, batch, dx));
}
