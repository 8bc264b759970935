// BatchNorm2d's per-channel passes (Engine/Layers/BatchNorm2d.swift calls them), one body compiled per x86
// vector level and picked by the `level` argument (BISSL_LEVEL_* of CKernels.h; every level may be passed
// on a machine that has it, BISSL_LEVEL_BASELINE anywhere).
//
// A channel's values are `n` planes of `plane` floats, plane s at `x + s * stride` (stride C*H*W in an
// NCHW buffer). Every sum has one order at every level, so results do not depend on the level: each plane
// summed in 32 float lanes (lane j takes the values at i = j mod 32, in order), the lanes added pairwise
// (32 -> 16 -> 8 -> 4 -> 2 -> 1), the plane's last `plane mod 32` values added to that one at a time, and
// the planes' float sums added in double in plane order. No multiply-add is fused (`a * b + c` rounds twice)
// at any level, so the passes repeat the operations of the scalar definitions in the comments.
#ifndef BISSL_BATCHNORM_H
#define BISSL_BATCHNORM_H

/// `sum_s sum_i x[s * stride + i]` (the order above).
double bissl_bn_sum(int level, const float *x, long n, long stride, long plane);

/// `sum_s sum_i (x[s * stride + i] - mean)^2`, each deviation rounded to float, squared in float (order above).
double bissl_bn_squared_deviation(int level, const float *x, long n, long stride, long plane, float mean);

/// `y[s * stride + i] = x[s * stride + i] * a + b` (two roundings), then with `relu` non-zero ReLU's rule
/// `v <= 0 ? 0 : v` (NaN stays NaN, as `torch.relu`). `y` may be `x`.
void bissl_bn_scale_shift(int level, const float *x, long n, long stride, long plane, float a, float b, int relu,
                          float *y);

/// A ResNet block's last BatchNorm, residual add and output ReLU in one pass:
/// `v = (x[s * stride + i] * a + b) + r[s * stride + i]` (three roundings, in that order), then ReLU's rule
/// `y = v <= 0 ? 0 : v` (NaN stays NaN): the values of `bissl_bn_scale_shift` without `relu` followed by the
/// add and the rule of `ReLU.forward(_:adding:)`. `r`'s planes are laid out as x's; `y` may be `x` or `r`.
void bissl_bn_scale_shift_add_relu(int level, const float *x, long n, long stride, long plane, float a, float b,
                                   const float *r, float *y);

/// The backward's dy of the channel as its rules see it: `g = dy`, or with `gate` non-zero ReLU's backward rule
/// `g = x * a + b > 0 ? dy : 0` (the pre-activation recomputed with the operations of `bissl_bn_scale_shift`,
/// so the forward's decision; NaN dy passes where the gate is open). dy's planes at `dy + s * dystride`, x's
/// at `x + s * stride`.
///
/// The per-channel sums of g: `sums[0] = sum_s (sum_i g * (x - mean)) * invStd` (each plane's float sum times
/// invStd in float, then added in double), `sums[1] = sum_s sum_i g` (the order above).
void bissl_bn_gate_sums(int level, const float *dy, long dystride, const float *x, long stride, long n, long plane,
                        int gate, float a, float b, float mean, float invStd, double sums[2]);

/// The input gradient from g (as `bissl_bn_gate_sums` gates it): with `batch` non-zero
/// `dx = k * ((g - meanDy) - ((x - mean) * invStd) * meanDyXhat)` (the train-mode rule, k = gamma * invStd),
/// else `dx = k * g`. dx's planes at `dx + s * stride`.
void bissl_bn_input_gradient(int level, const float *dy, long dystride, const float *x, long stride, long n, long plane,
                             int gate, float a, float b, float mean, float invStd, float k, float meanDy, float meanDyXhat,
                             int batch, float *dx);

#endif
