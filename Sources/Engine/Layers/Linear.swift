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
                    GEMM.sgemm(transB: true, m: x.rows, n: outFeatures, k: inFeatures, a: xp.baseAddress!, lda: inFeatures,
                               b: wp.baseAddress!, ldb: inFeatures, beta: bias == nil ? 0 : 1, c: yp.baseAddress!, ldc: outFeatures)
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
        let N = x.rows, I = inFeatures, O = outFeatures
        dy.data.withUnsafeBufferPointer { gp in
            x.data.withUnsafeBufferPointer { xp in
                weight.grad.withUnsafeMutableBufferPointer { wg in
                    GEMM.sgemm(transA: true, m: O, n: I, k: N, a: gp.baseAddress!, lda: O, b: xp.baseAddress!, ldb: I,
                               beta: 1, c: wg.baseAddress!, ldc: I)
                }
            }
            weight.value.withUnsafeBufferPointer { wp in
                dx.data.withUnsafeMutableBufferPointer { dxp in
                    GEMM.sgemm(m: N, n: I, k: O, a: gp.baseAddress!, lda: O, b: wp.baseAddress!, ldb: I,
                               c: dxp.baseAddress!, ldc: I)
                }
            }
        }
        if let b = bias {
            for r in 0..<dy.rows { for o in 0..<outFeatures { b.grad[o] += dy.data[r * outFeatures + o] } }
        }
        return dx
    }
}
