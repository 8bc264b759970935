import CKernels

/// `torch.nn.MaxPool2d(kernel, stride, padding)` (https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html);
/// the ResNet stem uses `(3, 2, 1)`. Padding counts as -inf. Ties go to the first maximum in
/// row-major window order, as PyTorch's CPU kernel does (strict `>`). Backward routes each
/// output gradient to its argmax.
public final class MaxPool2d {
    public let kernel: Int, stride: Int, padding: Int
    private var argmax: [Int32] = []
    private var inputShape: [Int] = []

    public init(kernel: Int = 3, stride: Int = 2, padding: Int = 1) {
        self.kernel = kernel; self.stride = stride; self.padding = padding
    }

    public func outputSize(_ size: Int) -> Int { (size + 2 * padding - kernel) / stride + 1 }

    /// Forward: x `[N, C, H, W]` -> `[N, C, Ho, Wo]`, `Ho = (H + 2p - k) / s + 1`.
    public func forward(_ x: Tensor4) -> Tensor4 {
        let ho = outputSize(x.h), wo = outputSize(x.w), H = x.h, W = x.w
        var y = Tensor4(n: x.n, c: x.c, h: ho, w: wo)
        argmax = [Int32](repeating: 0, count: y.count)
        inputShape = x.shape
        let (kernel, stride, padding) = (self.kernel, self.stride, self.padding)
        x.data.withUnsafeBufferPointer { xp in
            y.data.withUnsafeMutableBufferPointer { yp in
                argmax.withUnsafeMutableBufferPointer { ap in
                    let (xs, ys, args) = (xp.baseAddress!, yp.baseAddress!, ap.baseAddress!)
                    // planes in parallel, each written by one thread
                    Parallel.forEachChunk(x.n * x.c, workPerIndex: ho * wo * kernel * kernel) { planes in
                        for plane in planes {
                            let src = xs + plane * H * W
                            for oh in 0..<ho {
                                let h0 = oh * stride - padding
                                let rows = max(h0, 0)..<min(h0 + kernel, H)
                                for ow in 0..<wo {
                                    let w0 = ow * stride - padding
                                    var best = -Float.infinity, at = -1
                                    if kernel == 3 && rows.count == 3 && w0 >= 0 && w0 + 3 <= W {
                                        // a whole 3x3 window (the stem's pool away from the border): the loop
                                        // below unrolled, the same comparisons in the same order
                                        let first = h0 * W + w0
                                        best = src[first]; at = first
                                        for t in 1..<9 {
                                            let index = first + (t / 3) * W + t % 3, v = src[index]
                                            if v > best || v.isNaN { best = v; at = index }
                                        }
                                        let o = (plane * ho + oh) * wo + ow
                                        ys[o] = best
                                        args[o] = Int32(at)
                                        continue
                                    }
                                    for i in rows {
                                        for j in max(w0, 0)..<min(w0 + kernel, W) {
                                            let v = src[i * W + j]
                                            if v > best || v.isNaN || at < 0 { best = v; at = i * W + j }
                                        }
                                    }
                                    let o = (plane * ho + oh) * wo + ow
                                    ys[o] = best
                                    args[o] = Int32(at)
                                }
                            }
                        }
                    }
                }
            }
        }
        if let patterns = ActivationPatterns.current {
            // pinned winners (finite-difference HVPs): replay routes through the recorded argmax
            argmax = patterns.maxPoolArgmax(argmax)
            for o in y.data.indices {
                let plane = o / (ho * wo)
                y.data[o] = x.data[plane * H * W + Int(argmax[o])]
            }
        }
        return y
    }

    /// Inference: x `[N, C, H, W]` -> `[N, C, Ho, Wo]`, the values of `forward` (the same comparisons in the
    /// same order, so the same bits) without the argmax a backward pass would need: nothing is kept, and
    /// the windows are compared by `bissl_maxpool_infer` (Sources/CKernels/im2col.c) at the CPU's vector
    /// level, many outputs at once. Needs `padding < kernel` (every window holds a value of the plane).
    public func infer(_ x: Tensor4) -> Tensor4 {
        precondition(padding < kernel, "MaxPool2d: padding \(padding) not below the kernel \(kernel)")
        let ho = outputSize(x.h), wo = outputSize(x.w), H = x.h, W = x.w
        let (kernel, stride, padding, level) = (self.kernel, self.stride, self.padding, DirectConvolution.level)
        let y = [Float](count: x.n * x.c * ho * wo) { yp in
            x.data.withUnsafeBufferPointer { xp in
                let (xs, ys) = (xp.baseAddress!, yp.baseAddress!)
                // planes in parallel, each written by one thread
                Parallel.forEachChunk(x.n * x.c, workPerIndex: ho * wo * kernel * kernel) { planes in
                    bissl_maxpool_infer(level, xs + planes.lowerBound * H * W, planes.count, H, W, kernel, stride, padding,
                                        ho, wo, ys + planes.lowerBound * ho * wo)
                }
            }
        }
        return Tensor4(n: x.n, c: x.c, h: ho, w: wo, data: y)
    }

    /// Tangent forward: ẋ `[N, C, H, W]` -> ẏ `[N, C, Ho, Wo]`, ẏ = ẋ at the primal forward's argmax
    /// (the winners are held fixed, as double backward does). The tangent backward routes R{dy}
    /// through the same argmax: it is `backward`.
    public func tangentForward(_ dotX: Tensor4) -> Tensor4 {
        precondition(dotX.shape == inputShape, "MaxPool2d: tangent shape \(dotX.shape) vs \(inputShape)")
        let ho = outputSize(dotX.h), wo = outputSize(dotX.w), HW = dotX.h * dotX.w, P = ho * wo
        var y = Tensor4(n: dotX.n, c: dotX.c, h: ho, w: wo)
        for o in y.data.indices { y.data[o] = dotX.data[(o / P) * HW + Int(argmax[o])] }
        return y
    }

    public func tangentBackward(_ rdy: Tensor4) -> Tensor4 { backward(rdy) }

    /// Backward: dy `[N, C, Ho, Wo]` -> dx `[N, C, H, W]` (each dy added at its argmax).
    public func backward(_ dy: Tensor4) -> Tensor4 {
        var dx = Tensor4(n: inputShape[0], c: inputShape[1], h: inputShape[2], w: inputShape[3])
        let HW = dx.h * dx.w, P = dy.h * dy.w
        dx.data.withUnsafeMutableBufferPointer { dxp in
            dy.data.withUnsafeBufferPointer { gp in
                argmax.withUnsafeBufferPointer { ap in
                    let (dxs, gs, args) = (dxp.baseAddress!, gp.baseAddress!, ap.baseAddress!)
                    // planes in parallel, each plane's dx written by one thread in the order of its outputs
                    Parallel.forEachChunk(dy.n * dy.c, workPerIndex: P) { planes in
                        for plane in planes {
                            for q in 0..<P {
                                let o = plane * P + q
                                dxs[plane * HW + Int(args[o])] += gs[o]
                            }
                        }
                    }
                }
            }
        }
        return dx
    }
}
