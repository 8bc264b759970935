import CKernels

/// The direct path of `Conv2d` for 3x3 convolutions with padding 1 (every 3x3 convolution of a ResNet
/// and the small stem) where it beats im2col + GEMM (`kernel(for:...)`): no im2col matrix and no GEMM
/// packing, the multiply-adds done by the AVX2 or AVX-512 kernels of `Sources/CKernels`.
///
/// Two kinds of kernel:
/// - `.lanes` (stride 1; the forward correlation also at stride 2): vectors across positions. The correlations
///   read the NCHW planes as they are (`bissl_conv3x3_planes`): each vector is consecutive positions of one
///   image's plane, each tap one load shifted by `(i - 1) W + (j - 1)` whose lanes in the padding are masked
///   off, and each output vector stored to its NCHW place through the epilogue; at stride 2 the same from a
///   copy of each plane split into its 4 phases (even/odd rows x even/odd columns, each Ho x Wo), where tap
///   (i, j) of consecutive outputs is again one shifted load (rows i = 0, 1, 2 in the odd, even, odd phase at
///   row offsets -1, 0, 0; columns likewise). The weight gradient reads zero-padded copies: a chunk of
///   `images` consecutive images of one channel is one "tall" plane, rows of `row = W + 2` floats, a zero
///   row, then each image's H rows (a zero column either side) followed by one zero row; grid position `q`
///   is the window centred on padded position `q + row + 1`, so image `n`'s output row `h` is grid row
///   `n (H + 1) + h`, columns 0..<W (the other grid positions are dropped).
/// - `.byPosition` (stride 1 or 2): vectors across output channels, each x value broadcast from the padded
///   planes, for the listed output positions only (the window of output `(n, oh, ow)` starts at padded row
///   `n (H + 1) + s oh`, column `s ow`); weights and output gradients stored with the output channel
///   innermost. Wins with more channels and on small planes (the weight gradient).
///
/// The three products of `Conv2d` use them, each for a sum of terms (`Conv2d`'s tangent rules have two):
/// the correlations stack their terms as channels (T inputs of C channels read as one input of T C
/// channels, the weights `stacked` to `[O][T C][9]`), the weight gradient as images (a batch of T N).
/// - forward `y = conv(x, W)`: the kernel with `W` `[O, C, 3, 3]`;
/// - input gradient `dx = conv^T(dy, W)`: for stride 1 and padding 1 this is the same correlation of dy
///   (zero outside its planes) with the weights transposed to `[C, O]` and flipped (tap `(i, j)` ->
///   `(2 - i, 2 - j)`); stride 2 stays on im2col + GEMM (col2im);
/// - weight gradient `dW[o, c, i, j] += sum dy[n, o, h, w] x[n, c, s h + i - 1, s w + j - 1]`.
///
/// Each output value's order of additions (c, then the taps in (i, j) order) is the same for both
/// correlation kernels and both vector levels, each multiply-add fused (FMA), a tap in the padding adding
/// `0 * w` as the padded planes did; the weight gradient's `.lanes` sums differ between the levels (lane
/// sums), so results differ between CPUs by float32 rounding, as the BLAS kernels' do.
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

    /// The three products of a convolution.
    enum Product { case forward, inputGradient, weightGradient }

    /// The two kinds of kernel (see the type's documentation).
    enum Kernel { case lanes, byPosition }

    /// Which kernel computes `product` of a convolution with these settings on input planes of `width`
    /// (`inputChannels` C and `outputChannels` O of the convolution, whatever the product), or nil for
    /// im2col + GEMM. From per-kernel timings against im2col + OpenBLAS's SkylakeX kernel with the engine's
    /// chunking, one core (docs/performance.md, "Engine"):
    /// - the correlations (forward; the input gradient reads O planes and writes C) at stride 1 on `.lanes`
    ///   (read from the NCHW planes) up to 128 input channels at AVX-512 and 64 at AVX2, on planes of any
    ///   width (the padded planes' dropped columns and rows are gone, so narrow planes no longer waste lanes);
    ///   at stride 2 (forward only: its input gradient is not a correlation) at AVX-512 `.lanes` on the phase
    ///   planes up to 64 input channels (1.01-1.43x `.byPosition`), `.byPosition` up to 128 (ResNet-50's
    ///   training was slower in 6 of 8 A/B rounds (0.87-0.98x) with its 128-channel layer on the phase
    ///   planes; `.byPosition` is itself 1.1-2.2x the GEMM), the GEMM at AVX2 (`.byPosition` was 0.98x)
    ///   (docs/performance.md, "Stride-2 correlations on phase planes");
    /// - the weight gradient on `.lanes` up to 8 channels either side at stride 1 from 8 wide, else
    ///   `.byPosition` up to 256 channels (1.3-5x the GEMM; 0.8x at 512).
    /// SSE2 alone lost to the GEMM on all but the 8-channel shapes, so the baseline has no direct path.
    static func kernel(for product: Product, kernel: Int, stride: Int, padding: Int, width: Int,
                       inputChannels C: Int, outputChannels O: Int) -> Kernel? {
        guard level >= BISSL_LEVEL_AVX2, kernel == 3, padding == 1, stride == 1 || stride == 2 else { return nil }
        let avx512 = level >= BISSL_LEVEL_AVX512
        switch product {
        case .forward, .inputGradient:
            let (cin, cout) = product == .forward ? (C, O) : (O, C)
            if stride == 2 {
                guard product == .forward, avx512, cin <= 128 else { return nil }
                return cin <= 64 ? (cout % 4 == 0 ? .lanes : nil) : (cout % 16 == 0 ? .byPosition : nil)
            }
            return cin <= (avx512 ? 128 : 64) && cout % 4 == 0 ? .lanes : nil
        case .weightGradient:
            if stride == 1 && width >= 8 && max(C, O) <= 8 && O % 4 == 0 { return .lanes }
            return O % 8 == 0 && max(C, O) <= 256 ? .byPosition : nil
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
        /// Grid positions the `.lanes` weight gradient sums over per chunk (a multiple of `BISSL_CONV3X3_TILE`).
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

        /// For `.byPosition`: the padded-plane offset of each output position's window (its top-left tap),
        /// output position `(local, oh, ow)` of a chunk at index `(local * ho + oh) * wo + ow`, for outputs
        /// of `ho` x `wo` at `stride`.
        func windows(stride: Int, ho: Int, wo: Int) -> [Int] {
            var offsets = [Int]()
            offsets.reserveCapacity(chunkSize * ho * wo)
            for local in 0..<chunkSize { for oh in 0..<ho { for ow in 0..<wo {
                offsets.append((local * (h + 1) + stride * oh) * row + stride * ow)
            } } }
            return offsets
        }
    }

    /// Copies images `images` of `src` (`channels` channels each) into `dst`, one tall padded plane per
    /// channel (`layout.plane` floats each), zeros everywhere else; each float written once (`bissl_pad_planes`).
    static func pad(_ src: ImageBatch, channels: Int, _ images: Range<Int>, _ layout: Layout,
                    into dst: UnsafeMutablePointer<Float>) {
        let sources: [UnsafePointer<Float>?] = images.map { src[$0] }
        bissl_pad_planes(sources, images.count, channels, layout.h, layout.w, layout.plane, dst)
    }

    /// The weights of a sum of T correlations with C input channels each, `w_t` `[O][C][9]`, as one correlation
    /// with T C input channels: `[O][T C][9]`, input channel `t C + c` of output o being `w_t[o][c]` (one
    /// term: its weights as they are).
    static func stacked(_ ws: [[Float]], outChannels O: Int) -> [Float] {
        guard ws.count > 1 else { return ws[0] }
        let each = ws[0].count / O
        return [Float](count: ws.count * ws[0].count) { s in
            for o in 0..<O {
                for (t, w) in ws.enumerated() {
                    w.withUnsafeBufferPointer { (s.baseAddress! + (o * ws.count + t) * each).update(from: $0.baseAddress! + o * each, count: each) }
                }
            }
        }
    }

    /// `[O][C][9]` -> `[C][9][O]` (`.byPosition`'s weights: output channels innermost).
    static func outputChannelsInnermost(_ w: UnsafePointer<Float>, outChannels O: Int, inChannels C: Int) -> [Float] {
        [Float](count: O * C * 9) { t in
            for o in 0..<O { for i in 0..<(C * 9) { t[i * O + o] = w[o * C * 9 + i] } }
        }
    }

    /// `Σ_t conv(x_t, w_t)` for inputs `xs` (one shape, C channels) and their weights `stacked` to `w`
    /// `[O][T C][9]`, of a 3x3 pad-1 convolution of `stride` with `kernel` (`kernel(for: .forward, ...)`):
    /// `[N, O, Ho, Wo]`, each output value passed through `epilogue` when given (`Conv2d.infer`). `byPosition`: `w`
    /// already as `outputChannelsInnermost` gives it, when the caller keeps it.
    static func convolve(_ xs: [Tensor4], _ w: [Float], outChannels O: Int, stride: Int, kernel: Kernel,
                         epilogue: Conv2d.Epilogue? = nil, byPosition: [Float]? = nil) -> Tensor4 {
        let x = xs[0], T = xs.count, N = x.n, C = T * x.c
        precondition(w.count == O * C * 9, "DirectConvolution: weights for \(w.count / max(1, O * 9)) input channels, not \(C)")
        let ho = (x.h - 1) / stride + 1, wo = (x.w - 1) / stride + 1, p = ho * wo
        let level = self.level
        let y = [Float](count: N * O * p) { yp in
            ImageBatch.with(xs) { images in
                w.withUnsafeBufferPointer { wp in
                    withEpilogue(epilogue) { shift, residual, relu in
                        func output(_ images: Range<Int>) -> bissl_output {
                            let at = images.lowerBound * O * p
                            return bissl_output(out: yp.baseAddress! + at, images: images.count, height: ho, width: wo,
                                                channelStride: p, imageStride: O * p, shift: shift,
                                                residual: residual.map { $0 + at }, relu: relu ? 1 : 0)
                        }
                        switch kernel {
                        case .lanes:
                            // each image's planes read in place: image i of term t is pointer t * count + i
                            Parallel.forEachChunk(N, workPerIndex: O * p * C * 9) { range in
                                let planes: [UnsafePointer<Float>?] = (0..<T).flatMap { t in range.map { images[t * N + $0] } }
                                var y = output(range)
                                bissl_conv3x3_planes(level, planes, T, x.c, x.h, x.w, stride, wp.baseAddress!, O, &y)
                            }
                        case .byPosition:
                            let layout = Layout(images: N, h: x.h, w: x.w, pieces: Parallel.threads)
                            let transposed = byPosition ?? outputChannelsInnermost(wp.baseAddress!, outChannels: O, inChannels: C)
                            let windows = layout.windows(stride: stride, ho: ho, wo: wo)
                            // output position (local, q) of channel o at NCHW index local O p + o p + q
                            let places = (0..<(layout.chunkSize * p)).map { ($0 / p) * O * p + $0 % p }
                            Parallel.forEachChunk(layout.chunkCount, workPerIndex: layout.chunkSize * O * p * C * 9) { range in
                                let padded = UnsafeMutablePointer<Float>.allocate(capacity: C * layout.plane)
                                defer { padded.deallocate() }
                                for k in range {
                                    let chunk = layout.chunk(k)
                                    for t in 0..<T { pad(images, channels: x.c, chunk.shifted(t * N), layout, into: padded + t * x.c * layout.plane) }
                                    var y = output(chunk)
                                    bissl_conv3x3_by_position(level, padded, C, layout.plane, layout.row, windows, chunk.count * p,
                                                              transposed, O, &y, places)
                                }
                            }
                        }
                    }
                }
            }
        }
        return Tensor4(n: N, c: O, h: ho, w: wo, data: y)
    }

    /// `body` with `epilogue`'s shift, residual (nil: none) and ReLU flag as the kernels take them
    /// (`bissl_output`; shift nil: no epilogue).
    private static func withEpilogue<R>(_ epilogue: Conv2d.Epilogue?,
                                        _ body: (UnsafePointer<Float>?, UnsafePointer<Float>?, Bool) -> R) -> R {
        guard let epilogue else { return body(nil, nil, false) }
        return epilogue.shift.withUnsafeBufferPointer { shift in
            guard let residual = epilogue.residual else { return body(shift.baseAddress, nil, epilogue.relu) }
            return residual.withUnsafeBufferPointer { body(shift.baseAddress, $0.baseAddress, epilogue.relu) }
        }
    }

    /// `Σ_t conv^T(dy_t, w_t)` for weights `w_t` `[O, C, 3, 3]` of a stride-1 convolution: the input gradient,
    /// `[N, C, H, W]`, the correlation of the dy_t (stacked as T O channels, read in place) with the weights
    /// transposed and flipped.
    static func inputGradient(_ terms: [(dy: Tensor4, w: [Float])], inChannels C: Int, kernel: Kernel) -> Tensor4 {
        let O = terms[0].dy.c, T = terms.count
        // [C][T O][9], tap t of (o, c) in term k -> tap 8 - t of (c, k O + o)
        let flipped = [Float](count: T * O * C * 9) { f in
            for (k, term) in terms.enumerated() {
                let w = term.w
                for c in 0..<C { for o in 0..<O { for t in 0..<9 { f[(c * T * O + k * O + o) * 9 + t] = w[(o * C + c) * 9 + 8 - t] } } }
            }
        }
        return convolve(terms.map(\.dy), flipped, outChannels: C, stride: 1, kernel: kernel)
    }

    /// `grad += Σ_t corr(dy_t, x_t)`: the weight gradient `[O][C][9]` of output gradients dy_t `[N, O, Ho, Wo]`
    /// for inputs x_t `[N, C, H, W]` of a 3x3 pad-1 convolution of `stride` with `kernel`, the pairs taken as
    /// one batch of T N images (`ImageBatch`). The chunks in two fixed halves,
    /// one per core (`Parallel.accumulateInHalves`: the same additions on any number of cores, as `Conv2d`'s
    /// GEMM path). `.lanes`: dot products of the padded dy's grid with the shifted padded x; `.byPosition`:
    /// dy transposed to `[position][O]`, summed into `[C][9][O]`, added to `grad` transposed at the end.
    static func accumulateWeightGradient(_ pairs: [(dy: Tensor4, x: Tensor4)], stride: Int, kernel: Kernel, into grad: inout [Float]) {
        let x = pairs[0].x, dy = pairs[0].dy
        let layout = Layout(images: pairs.count * x.n, h: x.h, w: x.w, pieces: 2), C = x.c, O = dy.c, row = layout.row
        let level = self.level, p = dy.h * dy.w
        let windows = kernel == .byPosition ? layout.windows(stride: stride, ho: dy.h, wo: dy.w) : []
        var sum = [Float](repeating: 0, count: kernel == .byPosition ? grad.count : 0)   // [C][9][O]
        func run(into result: UnsafeMutablePointer<Float>, length: Int) {
            ImageBatch.with(pairs.map(\.x)) { xs in
                ImageBatch.with(pairs.map(\.dy)) { dys in
                    Parallel.accumulateInHalves(layout.chunkCount, into: result, length: length) { range, target, _ in
                        let px = UnsafeMutablePointer<Float>.allocate(capacity: C * layout.plane)
                        let g = UnsafeMutablePointer<Float>.allocate(capacity: kernel == .lanes ? O * layout.plane : layout.chunkSize * p * O)
                        defer { px.deallocate(); g.deallocate() }
                        for k in range {
                            let images = layout.chunk(k)
                            pad(xs, channels: C, images, layout, into: px)
                            switch kernel {
                            case .lanes:
                                pad(dys, channels: O, images, layout, into: g)
                                // dy's grid: padded position q + row + 1 is output q; the dropped positions are padding, zero
                                bissl_conv3x3_weight_gradient(level, g + row + 1, O, layout.plane, px, C, layout.plane, row,
                                                              layout.count, target)
                            case .byPosition:
                                for (local, n) in images.enumerated() {
                                    for o in 0..<O {
                                        let from = dys[n] + o * p, to = g + local * p * O + o
                                        for q in 0..<p { to[q * O] = from[q] }
                                    }
                                }
                                bissl_conv3x3_weight_gradient_by_position(level, g, O, px, C, layout.plane, row, windows,
                                                                          images.count * p, target)
                            }
                        }
                    }
                }
            }
        }
        switch kernel {
        case .lanes:
            grad.withUnsafeMutableBufferPointer { run(into: $0.baseAddress!, length: $0.count) }
        case .byPosition:
            sum.withUnsafeMutableBufferPointer { run(into: $0.baseAddress!, length: $0.count) }
            for o in 0..<O { for i in 0..<(C * 9) { grad[o * C * 9 + i] += sum[i * O + o] } }
        }
    }
}
