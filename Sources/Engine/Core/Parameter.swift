/// A trainable float32 tensor with its gradient, named by its PyTorch state-dict key within its
/// module (`layer1.0.conv1.weight`, `0.bias`). Reference type: layers, optimizers and the model's
/// parameter list share it.
public final class Parameter {
    /// State-dict key (within the owning component).
    public let name: String
    /// PyTorch shape: OIHW for conv weights, `[out, in]` for linear weights, `[C]` for BN.
    public let shape: [Int]
    /// Values in C order, `shape.product` of them.
    public var value: [Float] { didSet { version &+= 1 } }
    /// Changes with every write to `value` (in place or whole), for caches derived from it (`Conv2d.infer`'s
    /// folded weights). `didSet` without `oldValue` keeps in-place writes in place (no copy).
    public private(set) var version: UInt64 = 0
    /// Gradient of the loss, same layout as `value`; backward passes accumulate (`+=`) into it
    /// as PyTorch's `.grad` does, `zeroGrad()` resets it.
    public var grad: [Float]
    /// Direction `v` of an exact Hessian-vector product for this parameter (layout of `value`), read
    /// by the layers' tangent rules; empty means zero (parameters the product does not perturb, e.g.
    /// a head's). The tangent backward accumulates `(H v)` for this parameter into `grad`.
    public var tangent: [Float] = []

    /// `tangent`, or `count` zeros when it is empty.
    public var tangentOrZeros: [Float] { tangent.isEmpty ? [Float](repeating: 0, count: count) : tangent }

    public init(name: String, shape: [Int], value: [Float]) {
        precondition(value.count == shape.reduce(1, *), "Parameter \(name): \(value.count) values for shape \(shape)")
        self.name = name
        self.shape = shape
        self.value = value
        self.grad = [Float](repeating: 0, count: value.count)
    }

    /// A zero-valued parameter of `shape`.
    public convenience init(name: String, shape: [Int]) {
        self.init(name: name, shape: shape, value: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public var count: Int { value.count }

    /// Sets the gradient to zero (`optimizer.zero_grad(set_to_none=False)`).
    public func zeroGrad() {
        grad.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// `grad += g` elementwise (`g` in the layout of `value`), spread over the cores.
    public func accumulateGrad(_ g: [Float]) {
        precondition(g.count == grad.count, "Parameter \(name): \(g.count) gradient values for \(grad.count)")
        guard !g.isEmpty else { return }
        grad.withUnsafeMutableBufferPointer { gp in
            g.withUnsafeBufferPointer { sp in
                let (d, s) = (gp.baseAddress!, sp.baseAddress!)
                Parallel.forEachChunk(gp.count) { r in for i in r { d[i] += s[i] } }
            }
        }
    }
}

extension Parameter {
    /// `grad += λ (value − anchor)`, the gradient of the proximal penalty (λ/2)‖value − anchor‖² (BiSSL's
    /// lower level, docs/bissl.md "The alternation loop"), in one pass spread over the cores; λ = 0 leaves
    /// `grad` as it is. Returns ‖value − anchor‖² (each block of `Norms.blockSize` values summed in Double
    /// in order, the block sums added in order: the same on any number of cores).
    /// - Precondition: `anchor` has `count` values.
    @discardableResult
    public func addProximalGradient(anchor: [Float], lambda: Float) -> Double {
        precondition(anchor.count == count, "Parameter \(name): anchor of \(anchor.count) values for \(count)")
        let n = count, size = Norms.blockSize, blocks = (n + size - 1) / size
        var partial = [Double](repeating: 0, count: blocks)
        value.withUnsafeBufferPointer { vp in
            anchor.withUnsafeBufferPointer { ap in
                grad.withUnsafeMutableBufferPointer { gp in
                    partial.withUnsafeMutableBufferPointer { pp in
                        guard let v = vp.baseAddress, let a = ap.baseAddress, let g = gp.baseAddress, let s = pp.baseAddress else { return }
                        Parallel.forEachChunk(blocks, workPerIndex: size) { range in
                            for k in range {
                                var sum: Double = 0
                                for i in (k * size)..<min(n, (k + 1) * size) {
                                    let d = v[i] - a[i]
                                    sum += Double(d) * Double(d)
                                    if lambda != 0 { g[i] += lambda * d }
                                }
                                s[k] = sum
                            }
                        }
                    }
                }
            }
        }
        return partial.reduce(0, +)
    }
}

extension Array where Element == Parameter {
    /// Zeroes every gradient.
    public func zeroGrad() { for p in self { p.zeroGrad() } }
}
