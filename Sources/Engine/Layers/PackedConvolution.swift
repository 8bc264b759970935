import CKernels

/// The packed path of `Conv2d.infer`: the convolutions that would run as im2col + GEMM (every 1x1
/// convolution, the 7x7 stem, the 3x3 ones without a direct kernel) or on the dense path (planes with
/// fewer pixels than taps) on the GEMM of
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
    /// level, output planes of `chunkColumns` pixels or more, a direct 3x3 kernel, an empty batch).
    /// - Parameters: x `[N, C, H, W]`; scale, shift `[O]`; residual `[N, O, Ho, Wo]` or nil.
    func packedInfer(_ x: Tensor4, scale: [Float], shift: [Float], residual: Tensor4?, relu: Bool) -> Tensor4? {
        let level = DirectConvolution.level
        let R = bissl_packed_gemm_rows(level)
        guard R > 0, x.n > 0 else { return nil }
        if isDense(h: x.h, w: x.w) { return packedDenseInfer(x, scale: scale, shift: shift, residual: residual, relu: relu, level: level) }
        let ho = outputSize(x.h), wo = outputSize(x.w), N = x.n, O = outChannels, p = ho * wo
        // Only planes the OpenBLAS path cuts into chunks of several images (fewer than `chunkColumns` pixels):
        // there its packing and the moves of the chunk's rows cost most. On larger planes (the 96x96 input's
        // stem, first and second stages) OpenBLAS's kernel was faster than this one (docs/performance.md).
        guard p < Conv2d.chunkColumns,
              DirectConvolution.kernel(for: .forward, kernel: kernel, stride: stride, padding: padding, width: x.w,
                                       inputChannels: inChannels, outputChannels: outChannels) == nil else { return nil }
        let K = inChannels * kernel * kernel, image = inChannels * x.h * x.w
        // The images' planes as the GEMM's columns in place when no vector of 16 columns spans two images.
        let inPlace = kernel == 1 && stride == 1 && padding == 0 && p % 16 == 0
        let (size, count) = chunks(images: N, plane: p)
        let a = packedWeight(scale, level: level, plane: []) { pack in
            weight.value.withUnsafeBufferPointer { wp in
                scale.withUnsafeBufferPointer { bissl_packed_gemm_pack(level, wp.baseAddress!, K, $0.baseAddress!, O, K, pack) }
            }
        }
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

    /// The dense path (`DenseConvolution.swift`: planes with fewer pixels than taps, or one pixel) on the
    /// packed GEMM: `Y^T = D X^T` with `D` `[O Po, C Pi]` of the folded weight packed (its rows are the
    /// output channels' pixels, each scaled by its channel's `scale`), the batch's images transposed into
    /// the columns `X^T` `[C Pi, N]` (one copy of the input), and output column n written to image n's
    /// NCHW values through the epilogue.
    private func packedDenseInfer(_ x: Tensor4, scale: [Float], shift: [Float], residual: Tensor4?, relu: Bool,
                                  level: Int32) -> Tensor4 {
        let ho = outputSize(x.h), wo = outputSize(x.w), N = x.n, po = ho * wo
        let K = inChannels * x.h * x.w, M = outChannels * po, R = bissl_packed_gemm_rows(level)
        let a = packedWeight(scale, level: level, plane: [x.h, x.w]) { pack in
            let d = denseMatrix(of: foldedWeight(scale), h: x.h, w: x.w)
            d.withUnsafeBufferPointer { bissl_packed_gemm_pack(level, $0.baseAddress!, K, nil, M, K, pack) }
            denseOfOther = nil   // packed now: the dense path's copy is not kept beside it
        }
        // per output row m = o Po + q: channel o's shift
        let rowShift = (0..<M).map { shift[$0 / po] }
        let columns = [Float](count: K * N) { cp in
            x.data.withUnsafeBufferPointer { xp in
                for n in 0..<N { for k in 0..<K { cp[k * N + n] = xp[n * K + k] } }
            }
        }
        let scratchCount = bissl_packed_gemm_scratch(level, K)
        let pieces = max(1, min(Parallel.threads, M / R, N * M * K / Parallel.minimumWork))
        let y = [Float](count: N * M) { yp in
            a.withUnsafeBufferPointer { ap in
                columns.withUnsafeBufferPointer { cp in
                    rowShift.withUnsafeBufferPointer { sp in
                        withBaseAddresses(residual.map { [$0.data] } ?? []) { rs in
                            Parallel.forEachPiece(pieces) { piece in
                                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
                                defer { scratch.deallocate() }
                                let m0 = (M / R) * piece / pieces * R, m1 = piece == pieces - 1 ? M : (M / R) * (piece + 1) / pieces * R
                                // column n is image n: plane 1, image stride M (= O Po, its NCHW size)
                                bissl_packed_gemm(level, ap.baseAddress!, M, K, m0, m1, cp.baseAddress!, N, N, 0, N, 1, M,
                                                  sp.baseAddress!, rs.first, relu ? 1 : 0, yp.baseAddress!, scratch)
                            }
                        }
                    }
                }
            }
        }
        return Tensor4(n: N, c: outChannels, h: ho, w: wo, data: y)
    }

    /// The packed weight for `scale` at `level` and input planes `plane` (empty: the GEMM path; `[H, W]`: the
    /// dense path's matrix for those planes), written by `pack` into `bissl_packed_gemm_size` floats when the
    /// one kept from the last call was packed from another weight (`Parameter.version`), scale, level or plane.
    private func packedWeight(_ scale: [Float], level: Int32, plane: [Int], _ pack: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
        if let p = packed, p.version == weight.version, p.level == level, p.plane == plane, p.scale == scale { return p.matrix }
        let rows = plane.isEmpty ? outChannels : outChannels * outputSize(plane[0]) * outputSize(plane[1])
        let K = plane.isEmpty ? inChannels * kernel * kernel : inChannels * plane[0] * plane[1]
        let matrix = [Float](count: bissl_packed_gemm_size(level, rows, K)) { pack($0.baseAddress!) }
        packed = (weight.version, level, plane, scale, matrix)
        return matrix
    }
}
