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
        Linear.multiply(x, transposed: weight.value, into: &y, accumulate: bias != nil)
        return y
    }

    /// Backward: dy `[N, out]` -> dx `[N, in]` = dy W. Accumulates `dW += dy^T x`, `db += sum_rows(dy)`.
    /// Inside `Tangents.record` it keeps `dy` for `tangentBackward`.
    public func backward(_ dy: Matrix) -> Matrix {
        guard let x = input else { preconditionFailure("Linear \(weight.name): backward before forward") }
        precondition(dy.rows == x.rows && dy.cols == outFeatures, "Linear \(weight.name): gradient shape \(dy.shape)")
        if Tangents.recording { outputGradient = dy }
        accumulateGradients(dy, x)
        var dx = Matrix(rows: x.rows, cols: inFeatures)
        Linear.multiply(dy, weight.value, into: &dx, accumulate: false)
        return dx
    }

    // Tangent rules (bilinear layer; V = `weight.tangent`, ḃ = `bias.tangent`, empty = 0):
    //   ẏ = ẋ Wᵀ + x Vᵀ + ḃ;   R{dx} = R{dy} W + dy V;   R{dW} = R{dy}ᵀ x + dyᵀ ẋ;   R{db} = Σ_rows R{dy}.

    /// dy of the primal backward (inside `Tangents.record`) and ẋ of the last tangent forward.
    private var outputGradient: Matrix?
    private var tangentInput: Matrix?

    /// Tangent forward: ẋ `[N, in]` -> ẏ `[N, out]` at the primal forward's input. Keeps ẋ.
    public func tangentForward(_ dotX: Matrix) -> Matrix {
        guard let x = input else { preconditionFailure("Linear \(weight.name): tangent before forward") }
        precondition(dotX.shape == x.shape, "Linear \(weight.name): tangent shape \(dotX.shape) vs \(x.shape)")
        tangentInput = dotX
        var y = Matrix(rows: x.rows, cols: outFeatures)
        if let b = bias, !b.tangent.isEmpty {
            for r in 0..<x.rows { for o in 0..<outFeatures { y.data[r * outFeatures + o] = b.tangent[o] } }
        }
        Linear.multiply(dotX, transposed: weight.value, into: &y, accumulate: true)
        if !weight.tangent.isEmpty { Linear.multiply(x, transposed: weight.tangent, into: &y, accumulate: true) }
        return y
    }

    /// Tangent backward: R{dy} `[N, out]` -> R{dx} `[N, in]`; accumulates R{dW}, R{db} into the grads.
    public func tangentBackward(_ rdy: Matrix) -> Matrix {
        guard let x = input, let dy = outputGradient, let dotX = tangentInput else {
            preconditionFailure("Linear \(weight.name): tangent backward without a recorded primal backward and tangent forward")
        }
        accumulateGradients(rdy, x)
        Linear.accumulateOuter(dy, dotX, into: &weight.grad)
        var dx = Matrix(rows: x.rows, cols: inFeatures)
        Linear.multiply(rdy, weight.value, into: &dx, accumulate: false)
        if !weight.tangent.isEmpty { Linear.multiply(dy, weight.tangent, into: &dx, accumulate: true) }
        return dx
    }

    /// `dW += dyᵀ x`, `db += Σ_rows dy`.
    private func accumulateGradients(_ dy: Matrix, _ x: Matrix) {
        Linear.accumulateOuter(dy, x, into: &weight.grad)
        if let b = bias {
            for r in 0..<dy.rows { for o in 0..<outFeatures { b.grad[o] += dy.data[r * outFeatures + o] } }
        }
    }

    /// `y (+)= x wᵀ` for x `[N, in]`, w `[out, in]`.
    private static func multiply(_ x: Matrix, transposed w: [Float], into y: inout Matrix, accumulate: Bool) {
        let I = x.cols, O = y.cols
        x.data.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                y.data.withUnsafeMutableBufferPointer { yp in
                    GEMM.sgemm(transB: true, m: x.rows, n: O, k: I, a: xp.baseAddress!, lda: I,
                               b: wp.baseAddress!, ldb: I, beta: accumulate ? 1 : 0, c: yp.baseAddress!, ldc: O)
                }
            }
        }
    }

    /// `dx (+)= dy w` for dy `[N, out]`, w `[out, in]`.
    private static func multiply(_ dy: Matrix, _ w: [Float], into dx: inout Matrix, accumulate: Bool) {
        let I = dx.cols, O = dy.cols
        dy.data.withUnsafeBufferPointer { gp in
            w.withUnsafeBufferPointer { wp in
                dx.data.withUnsafeMutableBufferPointer { dxp in
                    GEMM.sgemm(m: dy.rows, n: I, k: O, a: gp.baseAddress!, lda: O, b: wp.baseAddress!, ldb: I,
                               beta: accumulate ? 1 : 0, c: dxp.baseAddress!, ldc: I)
                }
            }
        }
    }

    /// `g += dyᵀ x` for dy `[N, out]`, x `[N, in]`, g `[out, in]`.
    private static func accumulateOuter(_ dy: Matrix, _ x: Matrix, into g: inout [Float]) {
        let I = x.cols, O = dy.cols
        dy.data.withUnsafeBufferPointer { gp in
            x.data.withUnsafeBufferPointer { xp in
                g.withUnsafeMutableBufferPointer { wg in
                    GEMM.sgemm(transA: true, m: O, n: I, k: dy.rows, a: gp.baseAddress!, lda: O, b: xp.baseAddress!, ldb: I,
                               beta: 1, c: wg.baseAddress!, ldc: I)
                }
            }
        }
    }
}
