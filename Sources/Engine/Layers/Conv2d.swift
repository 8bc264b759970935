import CKernels

/// 2-D convolution without bias, `torch.nn.Conv2d(C, O, k, stride, padding, bias=False)`
/// (https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html), as GEMMs (`GEMM.sgemm`, OpenBLAS), on
/// planes with fewer pixels than taps as one dense matrix per image (`DenseConvolution.swift`), or for 3x3
/// convolutions with padding 1 directly where that is faster (`DirectConvolution`).
///
/// - Weight `[O, C, k, k]` (OIHW), key `<prefix>weight`.
/// - Output size `Ho = (H + 2p - k) / s + 1` (floor), same for `Wo`.
/// - The batch is cut into chunks of consecutive images (`chunks`: one image when its output plane has at
///   least `chunkColumns` pixels, else as many as make that many columns; a 1x1 stride-1 forward from
///   `oneImageColumns` pixels), spread over the cores. Each
///   chunk is unfolded with im2col into `[C*k*k, n*Ho*Wo]` (a 1x1 stride-1 convolution of one image reads
///   the image itself) and multiplied by the weight while it is in cache; a one-image chunk's GEMM writes
///   its NCHW output directly, larger chunks' outputs are moved into NCHW. The backward passes go chunk by
///   chunk the same way (col2im per chunk; a 1x1 stride-1 input gradient is written in place from
///   `oneImageColumns` pixels, as the forward, and moved into NCHW below).
/// - Every rule is a sum of convolution products (one for the forward and backward, two for the tangent
///   rules): the products of one sum share one chunk walk, so a tangent rule writes its output once (the
///   second GEMM adds into the first's output, the input gradient's two GEMMs fill one col2im buffer, the
///   two weight-gradient products run as one batch of 2N images).
public final class Conv2d {
    public let inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int
    /// `[O, C, k, k]`.
    public let weight: Parameter
    /// Input of the last forward pass, kept for the backward pass.
    private var input: Tensor4?

    public init(name: String, inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0) {
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.padding = padding
        self.weight = Parameter(name: name + "weight", shape: [outChannels, inChannels, kernel, kernel])
    }

    /// Spatial output size for an input side of `size`.
    public func outputSize(_ size: Int) -> Int { (size + 2 * padding - kernel) / stride + 1 }

    /// Output columns a chunk of the batch is made of, at least (one image when its plane is this large).
    /// Whole-batch im2col matrices (4.7 MB per layer of the small ResNet-18, width 8, at 16x16 and batch 64)
    /// were written to memory and read back by the GEMM; a chunk of 256 columns stays in L2 (README
    /// "Engine": the small model's steps 1.5-2.5x faster with chunks).
    static let chunkColumns = 256

    /// Output planes from which a 1x1 stride-1 forward takes one image per chunk (half of `chunkColumns`:
    /// where a chunk would hold two images). Such a GEMM reads the image and writes its NCHW output in
    /// place: the gather of two images' inputs and the move of their outputs are gone, and the product
    /// still has at least 128 columns (ResNet-50's 12x12 stage at 96x96; docs/performance.md, "fifth
    /// session"). The chunks of a sum over the batch (the weight gradient) stay those of `chunks`.
    static let oneImageColumns = chunkColumns / 2

    /// How the batch of `n` images with output planes of `plane` pixels is cut: `count` chunks of `size`
    /// consecutive images (the last may be smaller). From the shape only, never the core count, so that
    /// the weight gradient's order of additions is the same on every machine.
    func chunks(images n: Int, plane: Int) -> (size: Int, count: Int) {
        let wanted = min(n, max(1, (Conv2d.chunkColumns + plane - 1) / plane))
        let count = (n + wanted - 1) / wanted
        let size = (n + count - 1) / count   // the same count of chunks, balanced
        return (size, (n + size - 1) / size)
    }

    /// The `DirectConvolution` kernel that computes `product` on input planes of `width` (3x3 convolutions
    /// with padding 1 where it beats im2col + GEMM), or nil for the GEMM path.
    private func direct(_ product: DirectConvolution.Product, width: Int) -> DirectConvolution.Kernel? {
        DirectConvolution.kernel(for: product, kernel: kernel, stride: stride, padding: padding, width: width,
                                 inputChannels: inChannels, outputChannels: outChannels)
    }

    /// A 1x1 stride-1 convolution without padding: its im2col of one image is the image itself.
    private var readsImagesDirectly: Bool { kernel == 1 && stride == 1 && padding == 0 }

    /// Forward: x `[N, C, H, W]` -> y `[N, O, Ho, Wo]`. Keeps `x` for `backward`.
    public func forward(_ x: Tensor4) -> Tensor4 {
        precondition(x.c == inChannels, "Conv2d \(weight.name): input has \(x.c) channels, expected \(inChannels)")
        input = x
        return convolve([(x, weight.value)])
    }

    /// Inference with a BatchNorm folded in (nothing is kept for a backward pass):
    /// `y = conv(x, W * scale[o]) + shift[o] (+ residual)`, then `max(y, 0)` when `relu` is set; with
    /// `BatchNorm2d.evalAffine()`'s `scale`, `shift` it is `relu(bn(conv(x)) + residual)` of eval mode
    /// in one pass over the output (the weight scaled per output channel instead of the output: the
    /// results differ from the unfused layers by float32 rounding only).
    /// - Parameters: x `[N, C, H, W]`; scale, shift `[O]`; residual `[N, O, Ho, Wo]` or nil. Returns `[N, O, Ho, Wo]`.
    public func infer(_ x: Tensor4, scale: [Float], shift: [Float], adding residual: Tensor4? = nil, relu: Bool) -> Tensor4 {
        precondition(x.c == inChannels, "Conv2d \(weight.name): input has \(x.c) channels, expected \(inChannels)")
        precondition(scale.count == outChannels && shift.count == outChannels, "Conv2d \(weight.name): scale/shift of another size")
        precondition(residual.map { $0.shape == [x.n, outChannels, outputSize(x.h), outputSize(x.w)] } ?? true,
                     "Conv2d \(weight.name): residual of another shape")
        let w = foldedWeight(scale)
        return convolve([(x, w)], epilogue: Epilogue(shift: shift, residual: residual?.data, relu: relu),
                        byPosition: direct(.forward, width: x.w) == .byPosition && !isDense(h: x.h, w: x.w) ? foldedByPosition(w) : nil)
    }

    /// The folded weight `w` (`foldedWeight`'s, `[O][C][9]`) as the by-position kernels take it, `[C][9][O]`
    /// (`DirectConvolution.outputChannelsInnermost`), kept with it between `infer` calls.
    private func foldedByPosition(_ w: [Float]) -> [Float] {
        if let f = folded, let t = f.byPosition { return t }
        let t = w.withUnsafeBufferPointer { DirectConvolution.outputChannelsInnermost($0.baseAddress!, outChannels: outChannels, inChannels: inChannels) }
        folded?.byPosition = t
        return t
    }

    /// `W * scale[o]` per output channel, kept between `infer` calls: folded again only when the weight
    /// (`Parameter.version`) or the scale changed.
    private func foldedWeight(_ scale: [Float]) -> [Float] {
        if let f = folded, f.version == weight.version, f.scale == scale { return f.weight }
        let ckk = inChannels * kernel * kernel
        let w = [Float](count: weight.value.count) { fp in
            weight.value.withUnsafeBufferPointer { wp in
                for o in 0..<outChannels {
                    for i in 0..<ckk { fp[o * ckk + i] = wp[o * ckk + i] * scale[o] }
                }
            }
        }
        folded = (weight.version, scale, w, nil)
        return w
    }

    /// The last folded weight of `infer`, what it was folded from, and the weight for the by-position kernels.
    private var folded: (version: UInt64, scale: [Float], weight: [Float], byPosition: [Float]?)?

    /// The dense path's matrices (`denseMatrix`): of the weight at a version, and of the last other weights.
    var denseOfWeight: (version: UInt64, plane: [Int], matrix: [Float])?
    var denseOfOther: (source: [Float], plane: [Int], matrix: [Float])?

    /// Backward: dy `[N, O, Ho, Wo]` -> dx `[N, C, H, W]` (nil when `inputGradient` is false, e.g. for
    /// the stem, whose input is the image). Accumulates `dL/dW` into `weight.grad`. Inside
    /// `Tangents.record` it keeps `dy` for `tangentBackward`.
    public func backward(_ dy: Tensor4, inputGradient: Bool = true) -> Tensor4? {
        guard let x = input else { preconditionFailure("Conv2d \(weight.name): backward before forward") }
        precondition(dy.n == x.n && dy.c == outChannels && dy.h == outputSize(x.h) && dy.w == outputSize(x.w),
                     "Conv2d \(weight.name): gradient shape \(dy.shape) does not match the forward pass")
        if Tangents.recording { outputGradient = dy }
        accumulateWeightGradient([(dy, x)])
        return inputGradient ? self.inputGradient([(dy, weight.value)], like: x) : nil
    }

    // Tangent rules (forward-over-reverse, docs/bissl.md "Exact Hessian-vector products"). The layer is
    // bilinear in (x, W), so with the parameter direction V = `weight.tangent`:
    //   ẏ = conv(ẋ, W) + conv(x, V)
    //   R{dx} = conv^T(R{dy}, W) + conv^T(dy, V)
    //   R{dW} = corr(R{dy}, x) + corr(dy, ẋ)      (accumulated into `weight.grad`)

    /// Tangent forward: ẋ `[N, C, H, W]` (nil: the input does not depend on θ, e.g. images) -> ẏ
    /// `[N, O, Ho, Wo]`, using the input of the primal forward. Keeps ẋ for `tangentBackward`.
    public func tangentForward(_ dotX: Tensor4?) -> Tensor4 {
        guard let x = input else { preconditionFailure("Conv2d \(weight.name): tangent before forward") }
        tangentInput = dotX
        let terms: [(x: Tensor4, w: [Float])] = (dotX.map { [($0, weight.value)] } ?? []) + (weight.tangent.isEmpty ? [] : [(x, weight.tangent)])
        return terms.isEmpty ? Tensor4(n: x.n, c: outChannels, h: outputSize(x.h), w: outputSize(x.w)) : convolve(terms)
    }

    /// Tangent backward: R{dy} (shape of the output) -> R{dx} (nil when `inputGradient` is false);
    /// accumulates R{dW} (the Hessian-vector product's share of this weight) into `weight.grad`.
    /// Needs the primal backward's dy (run inside `Tangents.record`) and the last `tangentForward`.
    public func tangentBackward(_ rdy: Tensor4, inputGradient: Bool = true) -> Tensor4? {
        guard let x = input, let dy = outputGradient else {
            preconditionFailure("Conv2d \(weight.name): tangent backward without a recorded primal backward")
        }
        let pairs: [(dy: Tensor4, x: Tensor4)] = [(rdy, x)] + (tangentInput.map { [(dy, $0)] } ?? [])
        accumulateWeightGradient(pairs)
        guard inputGradient else { return nil }
        let terms: [(dy: Tensor4, w: [Float])] = [(rdy, weight.value)] + (weight.tangent.isEmpty ? [] : [(dy, weight.tangent)])
        return self.inputGradient(terms, like: x)
    }

    /// dy of the primal backward (kept inside `Tangents.record`) and ẋ of the last tangent forward.
    private var outputGradient: Tensor4?
    private var tangentInput: Tensor4?

    /// `Σ_t conv(x_t, w_t)` for inputs `x_t` of one shape and weights `w_t` `[O, C, k, k]`, each output value
    /// passed through `epilogue` when given. GEMM path: per chunk, each term's GEMM adds into the output the
    /// first one wrote.
    /// `byPosition`: the weight of a single term `[C][9][O]` for the direct path's `.byPosition` kernel, when
    /// the caller keeps it (`infer`).
    private func convolve(_ terms: [(x: Tensor4, w: [Float])], epilogue: Epilogue? = nil, byPosition: [Float]? = nil) -> Tensor4 {
        let x = terms[0].x
        precondition(terms.allSatisfy { $0.x.shape == x.shape }, "Conv2d \(weight.name): terms of different shapes")
        if isDense(h: x.h, w: x.w) { return denseConvolve(terms, epilogue: epilogue) }
        if let direct = direct(.forward, width: x.w) {
            return DirectConvolution.convolve(terms.map(\.x), DirectConvolution.stacked(terms.map(\.w), outChannels: outChannels),
                                              outChannels: outChannels, stride: stride, kernel: direct, epilogue: epilogue,
                                              byPosition: byPosition)
        }
        let ho = outputSize(x.h), wo = outputSize(x.w), N = x.n, O = outChannels
        let p = ho * wo, ckk = inChannels * kernel * kernel
        let y = [Float](count: N * O * p) { yp in
            Conv2d.withOutput(epilogue) { output in
                ImageBatch.with(terms.map(\.x)) { xs in
                    withBaseAddresses(terms.map(\.w)) { ws in
                        forEachImageChunk(images: N, plane: p, oneImage: readsImagesDirectly && p >= Conv2d.oneImageColumns) { chunk in
                            let images = chunk.images, width = images.count * p
                            // Y_n[O, P] in place for one image, else T[O, n*P] moved into NCHW below:
                            // += W_t[O, CKK] * cols_t[CKK, n*P] for each term
                            let out = images.count == 1 ? yp.baseAddress! + images.lowerBound * O * p : chunk.rows
                            for (t, w) in ws.enumerated() {
                                let b = columns(xs, images.shifted(t * N), like: x, ho: ho, wo: wo, into: chunk.columns)
                                GEMM.sgemm(m: O, n: width, k: ckk, a: w, lda: ckk, b: b, ldb: width, beta: t == 0 ? 0 : 1,
                                           c: out, ldc: width, parallel: chunk.splitGEMM)
                            }
                            // one image: the epilogue in place (nothing to do without one); more: T[o, local*P + q] moved
                            // to its NCHW place through the epilogue
                            if images.count == 1 && epilogue == nil { return }
                            let first = images.lowerBound * O * p
                            var y = bissl_output(out: yp.baseAddress! + first, images: images.count, height: ho, width: wo,
                                                 channelStride: p, imageStride: O * p, shift: output.shift,
                                                 residual: output.residual.map { $0 + first }, relu: output.relu ? 1 : 0)
                            bissl_store_rows(DirectConvolution.level, out, p, images.count == 1 ? p : width, O, &y)
                        }
                    }
                }
            }
        }
        return Tensor4(n: N, c: O, h: ho, w: wo, data: y)
    }

    /// `body` with `epilogue`'s shift, residual (nil: none) and ReLU flag as `bissl_output` takes them
    /// (shift nil: no epilogue).
    static func withOutput<R>(_ epilogue: Epilogue?,
                              _ body: ((shift: UnsafePointer<Float>?, residual: UnsafePointer<Float>?, relu: Bool)) -> R) -> R {
        guard let epilogue else { return body((nil, nil, false)) }
        return epilogue.shift.withUnsafeBufferPointer { shift in
            guard let residual = epilogue.residual else { return body((shift.baseAddress, nil, epilogue.relu)) }
            return residual.withUnsafeBufferPointer { body((shift.baseAddress, $0.baseAddress, epilogue.relu)) }
        }
    }

    /// `weight.grad += Σ_t corr(dy_t, x_t)` (dL/dW of output gradients dy_t for inputs x_t, each pair of the
    /// shapes of the forward). The pairs are one batch of `T N` images (`ImageBatch`), summed chunk by chunk.
    private func accumulateWeightGradient(_ pairs: [(dy: Tensor4, x: Tensor4)]) {
        let x = pairs[0].x, dy = pairs[0].dy
        precondition(pairs.allSatisfy { $0.x.shape == x.shape && $0.dy.shape == dy.shape }, "Conv2d \(weight.name): terms of different shapes")
        if isDense(h: x.h, w: x.w) { return denseAccumulateWeightGradient(pairs) }
        if let direct = direct(.weightGradient, width: x.w) {
            DirectConvolution.accumulateWeightGradient(pairs, stride: stride, kernel: direct, into: &weight.grad)
            return
        }
        let p = dy.h * dy.w, ckk = inChannels * kernel * kernel, O = outChannels
        // dW[O, CKK] += Σ_chunks dY[O, n*P] * cols[CKK, n*P]^T
        weight.grad.withUnsafeMutableBufferPointer { gp in
            ImageBatch.with(pairs.map(\.x)) { xs in
                ImageBatch.with(pairs.map(\.dy)) { dys in
                    forEachImageChunk(images: pairs.count * x.n, plane: p, accumulatingInto: gp.baseAddress!) { chunk in
                        let images = chunk.images, width = images.count * p
                        let a = gemmRows(dys, images, O, p, into: chunk.rows)
                        let b = columns(xs, images, like: x, ho: dy.h, wo: dy.w, into: chunk.columns)
                        GEMM.sgemm(transB: true, m: O, n: ckk, k: width, a: a, lda: width, b: b, ldb: width, beta: 1,
                                   c: chunk.sum!, ldc: ckk, parallel: chunk.splitGEMM)
                    }
                }
            }
        }
    }

    /// `Σ_t conv^T(dy_t, w_t)`: the input gradient of output gradients `dy_t` (one shape) for weights `w_t`,
    /// shaped like `x`. GEMM path: per chunk, the terms' GEMMs fill one buffer, folded back by one col2im.
    private func inputGradient(_ terms: [(dy: Tensor4, w: [Float])], like x: Tensor4) -> Tensor4 {
        let dy = terms[0].dy
        precondition(terms.allSatisfy { $0.dy.shape == dy.shape }, "Conv2d \(weight.name): terms of different shapes")
        if isDense(h: x.h, w: x.w) { return denseInputGradient(terms, like: x) }
        if let direct = direct(.inputGradient, width: x.w) {
            return DirectConvolution.inputGradient(terms, inChannels: inChannels, kernel: direct)
        }
        let p = dy.h * dy.w, ckk = inChannels * kernel * kernel, O = outChannels, N = x.n, image = inChannels * x.h * x.w
        let dx = [Float](count: x.count) { dxp in
            ImageBatch.with(terms.map(\.dy)) { dys in
                withBaseAddresses(terms.map(\.w)) { ws in
                    forEachImageChunk(images: N, plane: p, oneImage: readsImagesDirectly && p >= Conv2d.oneImageColumns) { chunk in
                        let images = chunk.images, width = images.count * p
                        let dxn = dxp.baseAddress! + images.lowerBound * image
                        // dX_n[C, P] in place (a 1x1 stride-1 convolution, one image: from `oneImageColumns` pixels,
                        // as the forward), else dcols[CKK, n*P] summed back into the chunk's images (a 1x1 stride-1
                        // convolution's by one move): += W_t[O, CKK]^T * dY_t[O, n*P] for each term
                        let inPlace = readsImagesDirectly && images.count == 1
                        for (t, w) in ws.enumerated() {
                            let b = gemmRows(dys, images.shifted(t * N), O, p, into: chunk.rows)
                            GEMM.sgemm(transA: true, m: ckk, n: width, k: O, a: w, lda: ckk, b: b, ldb: width, beta: t == 0 ? 0 : 1,
                                       c: inPlace ? dxn : chunk.columns, ldc: width, parallel: chunk.splitGEMM)
                        }
                        if readsImagesDirectly && !inPlace {
                            for (local, n) in images.enumerated() {
                                for c in 0..<inChannels {
                                    moveColumns(dxp.baseAddress! + (n * inChannels + c) * p, chunk.columns + c * width + local * p, p)
                                }
                            }
                        } else if !inPlace {
                            dxn.initialize(repeating: 0, count: images.count * image)
                            col2im(chunk.columns, images, into: dxp.baseAddress!, like: x, ho: dy.h, wo: dy.w)
                        }
                    }
                }
            }
        }
        return Tensor4(n: N, c: inChannels, h: x.h, w: x.w, data: dx)
    }

    /// One chunk of the batch as `forEachImageChunk` hands it to a worker thread.
    struct ImageChunk {
        /// The chunk's consecutive images.
        let images: Range<Int>
        /// The worker's scratch, room for the chunk's unfolded input `[C*k*k, n*Ho*Wo]` and for its
        /// `[O, n*Ho*Wo]` GEMM rows.
        let columns: UnsafeMutablePointer<Float>, rows: UnsafeMutablePointer<Float>
        /// Where a reduction over the batch adds this chunk's share (nil without `accumulatingInto`).
        let sum: UnsafeMutablePointer<Float>?
        /// Whether the chunk's GEMMs split themselves over the cores: fewer chunks than cores (a large
        /// layer on a small batch).
        let splitGEMM: Bool
    }

    /// Runs `body` on every chunk of a batch of `n` images with output planes of `p` pixels (`chunks`, or
    /// one image each when `oneImage`),
    /// each worker thread with its own scratch. Without `sum` the chunks go to the cores in contiguous
    /// ranges (each chunk writes its own images); with `sum` (`O*C*k*k` floats, the weight gradient) they
    /// are a reduction in two fixed halves (`Parallel.accumulateInHalves`), the same additions on any
    /// number of cores.
    private func forEachImageChunk(images n: Int, plane p: Int, accumulatingInto sum: UnsafeMutablePointer<Float>? = nil,
                                   oneImage: Bool = false, _ body: (ImageChunk) -> Void) {
        let (size, count) = oneImage ? (1, n) : chunks(images: n, plane: p)
        let ckk = inChannels * kernel * kernel
        func run(_ range: Range<Int>, sum: UnsafeMutablePointer<Float>?, splitGEMM: Bool) {
            let columns = UnsafeMutablePointer<Float>.allocate(capacity: ckk * size * p)
            let rows = UnsafeMutablePointer<Float>.allocate(capacity: outChannels * size * p)
            defer { columns.deallocate(); rows.deallocate() }
            for k in range {
                body(ImageChunk(images: k * size..<min(n, (k + 1) * size), columns: columns, rows: rows,
                                sum: sum, splitGEMM: splitGEMM))
            }
        }
        if let sum {
            Parallel.accumulateInHalves(count, into: sum, length: outChannels * ckk) { range, target, alone in
                run(range, sum: target, splitGEMM: alone)
            }
        } else {
            Parallel.forEachChunk(count, workPerIndex: size * outChannels * p * ckk) { range in
                run(range, sum: nil, splitGEMM: count < Parallel.threads)
            }
        }
    }

    /// Images `images` of NCHW gradients `dy` (`O` channels, planes of `p` pixels) as the `[O, n*P]`
    /// operand of the GEMMs: the image itself for one image, else gathered into `buffer`.
    private func gemmRows(_ dy: ImageBatch, _ images: Range<Int>, _ O: Int, _ p: Int,
                          into buffer: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        if images.count == 1 { return dy[images.lowerBound] }
        let width = images.count * p
        for (local, n) in images.enumerated() {
            for o in 0..<O { copyFloats(buffer + o * width + local * p, dy[n] + o * p, p) }
        }
        return UnsafePointer(buffer)
    }

    /// Images `images` of inputs shaped like `x`, unfolded (`[C*k*k, n*Ho*Wo]`, `im2col`), as the GEMMs'
    /// operand: the image itself for one image of a 1x1 stride-1 convolution, else unfolded into `buffer`.
    private func columns(_ xs: ImageBatch, _ images: Range<Int>, like x: Tensor4, ho: Int, wo: Int,
                         into buffer: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        if readsImagesDirectly && images.count == 1 { return xs[images.lowerBound] }
        im2col(xs, images, like: x, ho: ho, wo: wo, into: buffer)
        return UnsafePointer(buffer)
    }

    /// What `infer` applies to each output value of channel `o` at flat NCHW index `i`:
    /// `v + shift[o] (+ residual[i])`, then `ReLU`'s rule (`v <= 0 ? 0 : v`: NaN stays NaN) when `relu` is set;
    /// applied by the C kernels through `bissl_output` (`bissl_store_rows` after the GEMMs, the direct kernels).
    struct Epilogue {
        let shift: [Float]
        let residual: [Float]?
        let relu: Bool
    }

    /// Unfolds images `images` of `xs` (each `[C, H, W]`, shaped like `x`'s) into `cols` `[C*k*k, n*Ho*Wo]`
    /// (`n = images.count`): row `(c*k + i)*k + j`, column `(image - images.lowerBound)*Ho*Wo + oh*Wo + ow`
    /// holds `x[image, c, oh*s - p + i, ow*s - p + j]` (0 outside the image). Every value is written once
    /// (no zero-fill first), by `bissl_im2col` (Sources/CKernels/im2col.c) at the CPU's vector level: the
    /// stride-2 gathers (the 7x7 stem, the strided 3x3 and 1x1 convolutions) and the short rows of small
    /// planes were one float at a time in Swift, which is compiled for the x86-64 baseline.
    func im2col(_ xs: ImageBatch, _ images: Range<Int>, like x: Tensor4, ho: Int, wo: Int, into cols: UnsafeMutablePointer<Float>) {
        let pointers: [UnsafePointer<Float>?] = images.map { xs[$0] }
        pointers.withUnsafeBufferPointer { p in
            bissl_im2col(DirectConvolution.level, p.baseAddress!, images.count, x.c, x.h, x.w, kernel, stride, padding, ho, wo, cols)
        }
    }

    /// The valid outputs of kernel tap `(i, j)`: rows `oh` in `rows` and columns `ow` in `cols` read
    /// inside the image (`0 <= oh*s - p + i < H`, same for columns); the rest read the zero padding.
    /// A tap may read only padding (the 7x7/2 stem's first taps on a 2x2 image: the first row they
    /// reach lies past the last output row), so the bounds are compared before a range is made.
    private func window(_ i: Int, _ j: Int, _ x: Tensor4, ho: Int, wo: Int) -> (rows: Range<Int>, cols: Range<Int>) {
        let s = stride, pad = padding
        let r0 = max(0, (pad - i + s - 1) / s), r1 = min(ho, floorDiv(x.h - 1 + pad - i, s) + 1)
        let c0 = max(0, (pad - j + s - 1) / s), c1 = min(wo, floorDiv(x.w - 1 + pad - j, s) + 1)
        return (r0 < r1 && c0 < c1) ? (r0..<r1, c0..<c1) : (0..<0, 0..<0)
    }

    /// Adjoint of `im2col`: adds `cols` `[C*k*k, n*Ho*Wo]` of the chunk `images` into those images of `out`
    /// (NCHW, shaped like `x`; the values of padding positions are dropped). Each input value receives its
    /// taps in `(i, j)` order.
    func col2im(_ cols: UnsafePointer<Float>, _ images: Range<Int>, into out: UnsafeMutablePointer<Float>, like x: Tensor4,
                ho: Int, wo: Int) {
        let k = kernel, s = stride, pad = padding, C = x.c, H = x.h, W = x.w, P = ho * wo
        let width = images.count * P
        for c in 0..<C {
            for i in 0..<k {
                for j in 0..<k {
                    let (rows, valid) = window(i, j, x, ho: ho, wo: wo)
                    let row = cols + ((c * k + i) * k + j) * width
                    for (local, n) in images.enumerated() {
                        let plane = out + (n * C + c) * H * W
                        for oh in rows {
                            let src = row + local * P + oh * wo
                            let dst = plane + (oh * s - pad + i) * W + j - pad
                            if s == 1 {
                                addFloats(dst + valid.lowerBound, src + valid.lowerBound, valid.count)
                            } else {
                                for ow in valid { dst[ow * s] += src[ow] }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Same-shaped NCHW tensors read as one batch of images: image `i` is image `i % n` of tensor `i / n`.
/// The products of a sum (`Conv2d`'s tangent rules) walk their terms' images this way.
struct ImageBatch {
    /// Each tensor's first value.
    let tensors: [UnsafePointer<Float>]
    /// Images per tensor, floats per image.
    let n: Int, size: Int

    /// The first value of image `i`.
    @inline(__always) subscript(_ i: Int) -> UnsafePointer<Float> { tensors[i / n] + (i % n) * size }

    /// `body` with the images of `tensors` (at least one, all of one shape).
    static func with<R>(_ tensors: [Tensor4], _ body: (ImageBatch) -> R) -> R {
        let t = tensors[0]
        return withBaseAddresses(tensors.map(\.data)) { body(ImageBatch(tensors: $0, n: max(1, t.n), size: t.c * t.h * t.w)) }
    }
}

extension Range where Bound == Int {
    /// The range moved by `offset`.
    @inline(__always) func shifted(_ offset: Int) -> Range<Int> { (lowerBound + offset)..<(upperBound + offset) }
}

/// `body` with the first value of each array (every array kept alive and in place meanwhile).
func withBaseAddresses<R>(_ arrays: [[Float]], _ body: ([UnsafePointer<Float>]) -> R) -> R {
    var pointers: [UnsafePointer<Float>] = []
    pointers.reserveCapacity(arrays.count)
    func next(_ k: Int) -> R {
        guard k < arrays.count else { return body(pointers) }
        return arrays[k].withUnsafeBufferPointer { p in
            pointers.append(p.baseAddress ?? UnsafePointer(bitPattern: MemoryLayout<Float>.alignment)!)   // empty: never read
            return next(k + 1)
        }
    }
    return next(0)
}

/// `dst[i] += src[i]` for `count` floats, 8 lanes at a time.
@inline(__always) private func addFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
    var i = 0
    while i + 8 <= count {
        let v = d.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) + s.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
        d.storeBytes(of: v, toByteOffset: 4 * i, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count { dst[i] += src[i]; i += 1 }
}

/// `dst[i] = src[i] + 0` for `count` floats, 8 lanes at a time: what `col2im` leaves in a zeroed plane that
/// receives one tap (a 1x1 stride-1 convolution), `0 + v`, bit for bit (`-0 + 0` is `+0` as `0 + -0` is), in
/// one pass instead of a zero-fill and an add.
@inline(__always) private func moveColumns(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
    var i = 0
    while i + 8 <= count {
        d.storeBytes(of: s.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) + SIMD8<Float>(), toByteOffset: 4 * i, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count { dst[i] = src[i] + 0; i += 1 }
}

/// Integer division rounding toward negative infinity.
@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int {
    a >= 0 ? a / b : -((-a + b - 1) / b)
}
