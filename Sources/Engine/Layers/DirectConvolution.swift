import CKernels

/// The direct path of `Conv2d` for 3x3 "same" convolutions (stride 1, padding 1: every 3x3 convolution of
/// a ResNet block but the first of a stage, and the small stem) with few channels (`applies`): no im2col matrix and no GEMM packing, the multiply-adds done by the
/// AVX2 or AVX-512 kernels of `Sources/CKernels` on zero-padded planes.
///
/// Layout. A chunk of `images` consecutive images of one channel is one "tall" zero-padded plane: rows of
/// `row = W + 2` floats, a zero row, then each image's H rows (a zero column either side) followed by one
/// zero row. Output position `q` of the kernel's grid is the correlation centred on padded position
/// `q + row + 1`, so image `n`'s output row `h` is grid row `n (H + 1) + h`, columns 0..<W; the other
/// grid positions (the 2 columns per row and the row between images) are computed and dropped. Each
/// value is thus copied once (not 9 times as by im2col), and every multiply-add reads its operands from a
/// cache-resident tile.
///
/// The three products of `Conv2d` use it:
/// - forward `y = conv(x, W)`: the kernel with `W` `[O, C, 3, 3]` as `[O][C][9]`;
/// - input gradient `dx = conv^T(dy, W)`: for stride 1 and padding 1 this is the same correlation of the
///   padded dy with the weights transposed to `[C, O]` and flipped (tap `(i, j)` -> `(2 - i, 2 - j)`);
/// - weight gradient `dW[o, c, i, j] += sum dy[n, o, h, w] x[n, c, h + i - 1, w + j - 1]`: dot products of
///   the padded dy's grid (zero on the dropped positions) with the padded x shifted by each tap.
///
/// Each output value's order of additions (c, then the taps in (i, j) order) is the same at both vector
/// levels, each multiply-add fused (FMA); the weight gradient's lane sums differ between the levels, so
/// results differ between CPUs by float32 rounding, as the BLAS kernels' do.
enum DirectConvolution {
    /// The kernels' vector level (`BISSL_LEVEL_AVX2` or `BISSL_LEVEL_AVX512`; `BISSL_LEVEL_BASELINE`: no
    /// direct path): the widest the CPU has (`CPUFeatures`, which checks that the operating system saves the
    /// registers), AVX-512F or AVX2 only together with FMA. Tests set it to run each level this machine has.
    nonisolated(unsafe) static var level: Int32 = supportedLevel

    /// The widest level this CPU and build support.
    static let supportedLevel: Int32 = {
        let f = CPUFeatures.current
        let cpu = f.avx512f && f.fma ? BISSL_LEVEL_AVX512 : f.avx2 && f.fma ? BISSL_LEVEL_AVX2 : BISSL_LEVEL_BASELINE
        return min(Int32(cpu), bissl_kernels_max_level())
    }()

    /// The level's name, for `bissl doctor` and the benchmarks.
    static var levelName: String {
        switch level {
        case Int32(BISSL_LEVEL_AVX512): return "AVX-512F+FMA"
        case Int32(BISSL_LEVEL_AVX2): return "AVX2+FMA"
        default: return "none (im2col + GEMM only: no AVX2+FMA)"
        }
    }

    /// The two kinds of product the kernels compute: the correlation (forward, and the input gradient as
    /// a correlation of dy) and the weight gradient.
    enum Product { case correlation, weightGradient }

    /// Whether `product` of a convolution with these settings, reading `inputChannels` planes of width
    /// `width` and producing `outputChannels` (for the input gradient: dy's channels in, x's out), runs
    /// here rather than as im2col + GEMM. Where each wins was measured per kernel on the small ResNet-18's
    /// and ResNet-50's 3x3 shapes against OpenBLAS's SkylakeX kernel (README "Engine"): the correlation up
    /// to 64 input channels on planes from 4 wide at AVX-512 (32 channels, from 8 wide at AVX2), the
    /// weight gradient up to 16 channels either side from 8 wide; on narrower planes most of the padded
    /// grid is dropped positions. SSE2 alone lost to the GEMM on all but the 8-channel shapes, so the
    /// baseline has no direct path.
    static func applies(_ product: Product, kernel: Int, stride: Int, padding: Int, width: Int,
                        inputChannels: Int, outputChannels: Int) -> Bool {
        guard level >= BISSL_LEVEL_AVX2, kernel == 3, stride == 1, padding == 1, outputChannels % 4 == 0 else { return false }
        let avx512 = level >= BISSL_LEVEL_AVX512
        switch product {
        case .correlation: return width >= (avx512 ? 4 : 8) && inputChannels <= (avx512 ? 64 : 32)
        case .weightGradient: return width >= 8 && max(inputChannels, outputChannels) <= 16
        }
    }

    /// Grid positions a chunk is made of, at least (one image when its padded plane is this large).
    static let chunkPositions = 4096

    /// How a batch of `n` images of `h` x `w` is cut and laid out: chunks of about `chunkPositions`, their
    /// count rounded up to a multiple of `pieces` (the threads that share them) where the batch allows.
    /// The weight gradient passes 2 (its two fixed halves), never the core count, so that it adds in the
    /// same order on any machine; the correlations' values do not depend on the chunks.
    struct Layout {
        let images: Int, chunkSize: Int, chunkCount: Int
        let h: Int, w: Int
        /// Floats per padded row (`w + 2`).
        var row: Int { w + 2 }
        /// Grid positions computed per chunk (a multiple of the kernels' tile).
        let count: Int
        /// Floats per channel's tall padded plane (`count + 2 row + 2`, the kernels' reads, rounded to 16).
        var plane: Int { (count + 2 * row + 2 + 15) & ~15 }

        init(images n: Int, h: Int, w: Int, pieces: Int) {
            self.images = n; self.h = h; self.w = w
            let perImage = (h + 1) * (w + 2)
            let wanted = min(n, max(1, (DirectConvolution.chunkPositions + perImage - 1) / perImage))
            let count = min(n, ((n + wanted - 1) / wanted + pieces - 1) / pieces * pieces)
            chunkSize = (n + count - 1) / count
            chunkCount = (n + chunkSize - 1) / chunkSize
            let tile = Int(BISSL_CONV3X3_TILE)
            self.count = ((chunkSize * (h + 1) - 1) * (w + 2) + tile - 1) / tile * tile
        }

        func chunk(_ k: Int) -> Range<Int> { k * chunkSize..<min(images, (k + 1) * chunkSize) }
    }

    /// Copies images `images` of the NCHW buffer `src` (`channels` channels) into `dst`, one tall padded
    /// plane per channel (`layout.plane` floats each), zeros everywhere else.
    static func pad(_ src: UnsafePointer<Float>, channels: Int, _ images: Range<Int>, _ layout: Layout,
                    into dst: UnsafeMutablePointer<Float>) {
        let (h, w, row) = (layout.h, layout.w, layout.row)
        dst.update(repeating: 0, count: channels * layout.plane)
        for c in 0..<channels {
            for (local, n) in images.enumerated() {
                let from = src + (n * channels + c) * h * w
                let to = dst + c * layout.plane + (local * (h + 1) + 1) * row + 1
                for y in 0..<h { (to + y * row).update(from: from + y * w, count: w) }
            }
        }
    }

    /// `conv(x, w)` for weights `w` `[O][C][9]` (`O = outChannels`, a multiple of 4; `level` at least AVX2): `[N, O, H, W]`,
    /// each output row passed through `epilogue` when given (`Conv2d.infer`).
    static func convolve(_ x: Tensor4, _ w: UnsafePointer<Float>, outChannels O: Int,
                         epilogue: Conv2d.Epilogue? = nil) -> Tensor4 {
        let layout = Layout(images: x.n, h: x.h, w: x.w, pieces: Parallel.threads), C = x.c, (h, wd, row) = (x.h, x.w, layout.row)
        let level = self.level
        let y = [Float](count: x.n * O * h * wd) { yp in
            x.data.withUnsafeBufferPointer { xp in
                Parallel.forEachChunk(layout.chunkCount, workPerIndex: layout.chunkSize * O * h * wd * C * 9) { range in
                    let padded = UnsafeMutablePointer<Float>.allocate(capacity: C * layout.plane)
                    let grid = UnsafeMutablePointer<Float>.allocate(capacity: O * layout.count)
                    defer { padded.deallocate(); grid.deallocate() }
                    for k in range {
                        let images = layout.chunk(k)
                        pad(xp.baseAddress!, channels: C, images, layout, into: padded)
                        bissl_conv3x3(level, padded, C, layout.plane, row, w, O, grid, layout.count, layout.count)
                        for (local, n) in images.enumerated() {
                            for o in 0..<O {
                                for r in 0..<h {
                                    let at = ((n * O + o) * h + r) * wd
                                    let src = grid + o * layout.count + (local * (h + 1) + r) * row
                                    if let epilogue {
                                        epilogue.apply(yp.baseAddress! + at, from: src, channel: o, at: at, count: wd)
                                    } else {
                                        (yp.baseAddress! + at).update(from: src, count: wd)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Tensor4(n: x.n, c: O, h: h, w: wd, data: y)
    }

    /// `conv^T(dy, w)` for weights `w` `[O, C, 3, 3]` (`C` a multiple of 4): the input gradient, `[N, C, H, W]`.
    static func inputGradient(_ dy: Tensor4, _ w: [Float], inChannels C: Int) -> Tensor4 {
        let O = dy.c
        // [C][O][9], tap t of (o, c) -> tap 8 - t of (c, o)
        let flipped = [Float](count: w.count) { f in
            for c in 0..<C { for o in 0..<O { for t in 0..<9 { f[(c * O + o) * 9 + t] = w[(o * C + c) * 9 + 8 - t] } } }
        }
        return flipped.withUnsafeBufferPointer { convolve(dy, $0.baseAddress!, outChannels: C) }
    }

    /// `grad += corr(dy, x)`: the weight gradient `[O][C][9]` of output gradient dy `[N, O, H, W]` for input
    /// x `[N, C, H, W]`. The chunks in two fixed halves, one per core (`Parallel.accumulateInHalves`: the
    /// same additions on any number of cores, as `Conv2d`'s GEMM path).
    static func accumulateWeightGradient(_ dy: Tensor4, _ x: Tensor4, into grad: inout [Float]) {
        let layout = Layout(images: x.n, h: x.h, w: x.w, pieces: 2), C = x.c, O = dy.c, row = layout.row
        let level = self.level
        grad.withUnsafeMutableBufferPointer { gp in
            x.data.withUnsafeBufferPointer { xp in
                dy.data.withUnsafeBufferPointer { dyp in
                    Parallel.accumulateInHalves(layout.chunkCount, into: gp.baseAddress!, length: gp.count) { range, target, _ in
                        let px = UnsafeMutablePointer<Float>.allocate(capacity: C * layout.plane)
                        let pdy = UnsafeMutablePointer<Float>.allocate(capacity: O * layout.plane)
                        defer { px.deallocate(); pdy.deallocate() }
                        for k in range {
                            let images = layout.chunk(k)
                            pad(xp.baseAddress!, channels: C, images, layout, into: px)
                            pad(dyp.baseAddress!, channels: O, images, layout, into: pdy)
                            // dy's grid: padded position q + row + 1 is output q; the dropped positions are padding, zero
                            bissl_conv3x3_weight_gradient(level, pdy + row + 1, O, layout.plane, px, C, layout.plane, row,
                                                          layout.count, target)
                        }
                    }
                }
            }
        }
    }
}
