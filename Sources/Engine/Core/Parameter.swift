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

extension Array where Element == Parameter {
    /// Zeroes every gradient.
    public func zeroGrad() { for p in self { p.zeroGrad() } }
}
