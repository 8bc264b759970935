import CBLAS

/// `torch.nn.Linear(in, out, bias)` (https://pytorch.org/docs/stable/generated/torch.nn.Linear.html):
/// `y = x W^T + b`. Weight `[out, in]`, bias `[out]`; keys `<prefix>weight`, `<prefix>bias`.
/// Default initialisation as PyTorch's `reset_parameters`: weight and bias `U(-1/sqrt(in), 1/sqrt(in))`
/// (`kaiming_uniform_(a=sqrt(5))` reduces to that bound).
public final class Linear {
    public let inFeatures: Int, outFeatures: Int
    public let weight: Parameter
    public let bias: Parameter?
    private var input: Matrix?

    public init(name: String, inFeatures: Int, outFeatures: Int, bias: Bool = true) {
        self.inFeatures = inFeatures; self.outFeatures = outFeatures
        weight = Parameter(name: name + "weight", shape: [outFeatures, inFeatures])
        self.bias = bias ? Parameter(name: name + "bias", shape: [outFeatures]) : nil
    }

    public var parameters: [Parameter] { [weight] + (bias.map { [$0] } ?? []) }

    /// PyTorch's default initialisation, drawn from `rng` (weight first, then bias).
    public func resetParameters(rng: inout SeededRNG) {
        let bound = 1 / Float(inFeatures).squareRoot()
        for i in weight.value.indices { weight.value[i] = rng.uniform(-bound, bound) }
        if let b = bias { for i in b.value.indices { b.value[i] = rng.uniform(-bound, bound) } }
    }

    /// Forward: x `[N, in]` -> `[N, out]`. Keeps `x` for `backward`.
    public func forward(_ x: Matrix) -> Matrix {
        precondition(x.cols == inFeatures, "Linear \(weight.name): input has \(x.cols) features, expected \(inFeatures)")
        input = x
        var y = Matrix(rows: x.rows, cols: outFeatures)
        if let b = bias {
            for r in 0..<x.rows { for o in 0..<outFeatures { y.data[r * outFeatures + o] = b.value[o] } }
        }
        x.data.withUnsafeBufferPointer { xp in
            weight.value.withUnsafeBufferPointer { wp in
                y.data.withUnsafeMutableBufferPointer { yp in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(x.rows), Int32(outFeatures), Int32(inFeatures),
                                1, xp.baseAddress, Int32(inFeatures), wp.baseAddress, Int32(inFeatures),
                                bias == nil ? 0 : 1, yp.baseAddress, Int32(outFeatures))
                }
            }
        }
        return y
    }

    /// Backward: dy `[N, out]` -> dx `[N, in]` = dy W. Accumulates `dW += dy^T x`, `db += sum_rows(dy)`.
    public func backward(_ dy: Matrix) -> Matrix {
        guard let x = input else { preconditionFailure("Linear \(weight.name): backward before forward") }
        precondition(dy.rows == x.rows && dy.cols == outFeatures, "Linear \(weight.name): gradient shape \(dy.shape)")
        var dx = Matrix(rows: x.rows, cols: inFeatures)
        let N = Int32(x.rows), I = Int32(inFeatures), O = Int32(outFeatures)
        dy.data.withUnsafeBufferPointer { gp in
            x.data.withUnsafeBufferPointer { xp in
                weight.grad.withUnsafeMutableBufferPointer { wg in
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, N, 1, gp.baseAddress, O, xp.baseAddress, I,
                                1, wg.baseAddress, I)
                }
            }
            weight.value.withUnsafeBufferPointer { wp in
                dx.data.withUnsafeMutableBufferPointer { dxp in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, I, O, 1, gp.baseAddress, O, wp.baseAddress, I,
                                0, dxp.baseAddress, I)
                }
            }
        }
        if let b = bias {
            for r in 0..<dy.rows { for o in 0..<outFeatures { b.grad[o] += dy.data[r * outFeatures + o] } }
        }
        return dx
    }
}
