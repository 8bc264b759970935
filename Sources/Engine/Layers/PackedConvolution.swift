import CKernels

/// The packed path of `Conv2d.infer`: the convolutions that would run as im2col + GEMM (every 1x1
/// convolution, the 7x7 stem, the 3x3 ones without a direct kernel) on the GEMM of
/// `Sources/CKernels/packed_gemm.c` (`include/PackedGEMM.h`), at the vector level of the direct kernels
/// (`DirectConvolution.level`: AVX-512F or AVX2 with FMA; at the baseline, or with no kernel for the
/// level, `infer` keeps the OpenBLAS path).
///
/// In eval mode the weight is constant, so it is packed once into the micro-kernel's panels with the
/// BatchNorm scale folded in (`fl(w * scale[o])`, the value `infer`'s folded weight has on the other
/// paths) and kept until the weight (`Parameter.version`), the scale or the level changes. OpenBLAS packed
/// both operands on every call: on the chunked GEMMs of small planes its packing took half as long as its
/// kernel. The kernel reads the unfolded input in place (a 1x1 stride-1 convolution on planes of a
/// multiple of 16 pixels: the NCHW images themselves, no im2col) and writes each output value once,
/// straight into its NCHW place, through the epilogue (shift, residual, ReLU), where the OpenBLAS path
/// wrote a chunk's `[O, n*Ho*Wo]` rows and then moved them. Each output value is its K products summed
/// in order by fused multiply-adds (the same additions at AVX2 and AVX-512; OpenBLAS adds in another
/// order), so the results differ from the OpenBLAS path's by float32 rounding only.
extension Conv2d {
    /// `infer`'s result on the packed path, or nil when the convolution does not take it (no kernel at the
    /// level, planes for the dense path, a direct 3x3 kernel, an empty batch).
    /// - Parameters: x `[N, C, H, W]`; scale, shift `[O]`; residual `[N, O, Ho, Wo]` or nil.
    func packedInfer(_ x: Tensor4, scale: [Float], shift: [Float], residual: Tensor4?, relu: Bool) -> Tensor4? {
        let level = DirectConvolution.level
        let R = bissl_packed_gemm_rows(level)
        guard R > 0, x.n > 0, !isDense(h: x.h, w: x.w),
              DirectConvolution.kernel(for: .forward, kernel: kernel, stride: stride, padding: padding, width: x.w,
                                       inputChannels: inChannels, outputChannels: outChannels) == nil else { return nil }
        let ho = outputSize(x.h), wo = outputSize(x.w), N = x.n, O = outChannels, p = ho * wo
        let K = inChannels * kernel * kernel, image = inChannels * x.h * x.w
        // The images' planes as the GEMM's columns in place when no vector of 16 columns spans two images.
        let inPlace = kernel == 1 && stride == 1 && padding == 0 && p % 16 == 0
        let (size, count) = chunks(images: N, plane: p)
        let a = packedWeight(scale, level: level)
        let scratchCount = bissl_packed_gemm_scratch(level, K)
        // Fewer chunks than cores (a large layer on a small batch): each chunk's rows split over the cores.
        let pieces = count < Parallel.threads ? max(1, min(Parallel.threads, O / R)) : 1
        let y = [Float](count: N * O * p) { yp in
            ImageBatch.with([x]) { xs in
                a.withUnsafeBufferPointer { ap in
                    shift.withUnsafeBufferPointer { sp in
                        withBaseAddresses(residual.map { [$0.data] } ?? []) { rs in
                            Parallel.forEachChunk(count, workPerIndex: size * O * p * K) { range in
                                let columns = UnsafeMutablePointer<Float>.allocate(capacity: inPlace ? 0 : K * size * p)
                                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount * pieces)
                                defer { columns.deallocate(); scratch.deallocate() }
                                for k in range {
                                    let images = k * size..<min(N, (k + 1) * size), width = images.count * p
                                    if !inPlace { im2col(xs, images, like: x, ho: ho, wo: wo, into: columns) }
                                    let b = inPlace ? xs[images.lowerBound] : UnsafePointer(columns)
                                    let (ldb, bPlane, bImage) = inPlace ? (p, p, image) : (width, width, 0)
                                    let at = images.lowerBound * O * p
                                    Parallel.forEachPiece(pieces) { piece in
                                        let m0 = (O / R) * piece / pieces * R, m1 = piece == pieces - 1 ? O : (O / R) * (piece + 1) / pieces * R
                                        bissl_packed_gemm(level, ap.baseAddress!, O, K, m0, m1, b, ldb, bPlane, bImage, width, p, O * p,
                                                          sp.baseAddress!, rs.first.map { $0 + at }, relu ? 1 : 0, yp.baseAddress! + at,
                                                          scratch + piece * scratchCount)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Tensor4(n: N, c: O, h: ho, w: wo, data: y)
    }

    /// The weight `[O, C*k*k]` times `scale[o]` per row, packed for the GEMM at `level`; kept between calls
    /// and packed again only when the weight (`Parameter.version`), the scale or the level changed.
    private func packedWeight(_ scale: [Float], level: Int32) -> [Float] {
        if let p = packed, p.version == weight.version, p.level == level, p.scale == scale { return p.matrix }
        let M = outChannels, K = inChannels * kernel * kernel
        let matrix = [Float](count: bissl_packed_gemm_size(level, M, K)) { mp in
            weight.value.withUnsafeBufferPointer { wp in
                scale.withUnsafeBufferPointer { sp in
                    bissl_packed_gemm_pack(level, wp.baseAddress!, K, sp.baseAddress!, M, K, mp.baseAddress!)
                }
            }
        }
        packed = (weight.version, level, scale, matrix)
        return matrix
    }
}
