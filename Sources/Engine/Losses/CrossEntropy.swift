import Foundation

/// Cross-entropy with mean reduction, as `torch.nn.functional.cross_entropy(logits, target)`
/// (https://pytorch.org/docs/stable/generated/torch.nn.functional.cross_entropy.html).
public enum CrossEntropy {
    /// Hard targets: `loss = -1/N * sum_i log_softmax(z_i)[y_i]`.
    /// - Parameters: logits `[N, C]`, labels `N` class indices in `0..<C`.
    /// - Returns: the loss and `dL/dlogits` `[N, C]` `= (softmax(z_i) - onehot(y_i)) / N`.
    public static func forward(logits: Matrix, labels: [Int]) -> (loss: Float, gradient: Matrix) {
        precondition(labels.count == logits.rows, "CrossEntropy: \(labels.count) labels for \(logits.rows) rows")
        precondition(labels.allSatisfy { (0..<logits.cols).contains($0) }, "CrossEntropy: label outside 0..<\(logits.cols)")
        var target = Matrix(rows: logits.rows, cols: logits.cols)
        for (i, y) in labels.enumerated() { target.data[i * logits.cols + y] = 1 }
        return forward(logits: logits, probabilities: target)
    }

    /// Soft targets (class probabilities, e.g. multi-hot rows): `loss = -1/N * sum_i sum_c y_ic log_softmax(z_i)_c`,
    /// which is what PyTorch computes for a float target of the logits' shape (not binary cross-entropy).
    /// - Parameters: logits `[N, C]`, probabilities `[N, C]`.
    /// - Returns: the loss and `dL/dlogits` `[N, C]` `= (softmax(z_i) * sum_c y_ic - y_i) / N`.
    public static func forward(logits: Matrix, probabilities y: Matrix) -> (loss: Float, gradient: Matrix) {
        precondition(y.shape == logits.shape, "CrossEntropy: target shape \(y.shape) vs logits \(logits.shape)")
        let N = logits.rows, C = logits.cols
        var grad = Matrix(rows: N, cols: C)
        var total: Double = 0
        for i in 0..<N {
            let row = i * C
            let logZ = logSumExp(logits, row: row, count: C)
            var ySum: Double = 0
            for c in 0..<C {
                let t = Double(y.data[row + c])
                ySum += t
                if t != 0 { total -= t * (Double(logits.data[row + c]) - logZ) }
            }
            for c in 0..<C {
                let p = Foundation.exp(Double(logits.data[row + c]) - logZ)
                grad.data[row + c] = Float((p * ySum - Double(y.data[row + c])) / Double(N))
            }
        }
        return (Float(total / Double(N)), grad)
    }

    /// Tangent of the gradient for hard labels: `R{dL/dz} = (∂²L/∂z²) ż` `[N, C]`, with P = softmax(z):
    /// `R{dz_i} = P_i ⊙ (ż_i − P_i·ż_i) / N` (the labels do not depend on θ). Forward-over-reverse
    /// share of an exact Hessian-vector product (docs/bissl.md).
    public static func gradientTangent(logits: Matrix, dotLogits: Matrix) -> Matrix {
        precondition(dotLogits.shape == logits.shape, "CrossEntropy: tangent shape \(dotLogits.shape) vs \(logits.shape)")
        let N = logits.rows, C = logits.cols
        var out = Matrix(rows: N, cols: C)
        for i in 0..<N {
            let row = i * C
            let logZ = logSumExp(logits, row: row, count: C)
            var mean: Double = 0
            for c in 0..<C { mean += Foundation.exp(Double(logits.data[row + c]) - logZ) * Double(dotLogits.data[row + c]) }
            for c in 0..<C {
                let p = Foundation.exp(Double(logits.data[row + c]) - logZ)
                out.data[row + c] = Float(p * (Double(dotLogits.data[row + c]) - mean) / Double(N))
            }
        }
        return out
    }

    /// log Σ_c exp(z_c) of the `count` logits from `row`, in Double after subtracting the row maximum.
    private static func logSumExp(_ logits: Matrix, row: Int, count C: Int) -> Double {
        var m = -Float.infinity
        for c in 0..<C { m = max(m, logits.data[row + c]) }
        var s: Double = 0
        for c in 0..<C { s += Foundation.exp(Double(logits.data[row + c] - m)) }
        return Double(m) + Foundation.log(s)
    }
}
