/// `torch.nn.BatchNorm1d(F, eps=1e-5, momentum=0.1)` on `[N, F]` (the MLP heads of docs/bissl.md,
/// "Network, heads and state-dict keys"). Same semantics as `BatchNorm2d` with `H = W = 1`: train mode normalises with the
/// biased batch variance and updates `running_var` with the unbiased one; keys `<prefix>weight`,
/// `bias`, `running_mean`, `running_var`, `num_batches_tracked`. With `affine: false`
/// (`BatchNorm1d(F, affine=False)`, the last layer of MoCo v3 and SimSiam heads) gamma stays 1 and
/// beta 0: they are not parameters and have no keys.
public final class BatchNorm1d {
    /// The computation is BatchNorm2d's on `[N, F, 1, 1]`.
    public let core: BatchNorm2d
    /// False for `affine=False`: `weight`/`bias` are fixed at 1/0 and left out of `parameters`.
    public let affine: Bool

    public init(name: String, features: Int, affine: Bool = true) {
        core = BatchNorm2d(name: name, channels: features)
        self.affine = affine
    }

    /// `[weight, bias]`, or none when not affine.
    public var parameters: [Parameter] { affine ? [core.weight, core.bias] : [] }

    public var weight: Parameter { core.weight }
    public var bias: Parameter { core.bias }

    /// Forward: x `[N, F]` -> `[N, F]`.
    public func forward(_ x: Matrix, mode: Mode) -> Matrix {
        let y = core.forward(Tensor4(n: x.rows, c: x.cols, h: 1, w: 1, data: x.data), mode: mode)
        return Matrix(rows: x.rows, cols: x.cols, data: y.data)
    }

    /// Backward: dy `[N, F]` -> dx `[N, F]`; accumulates gamma/beta gradients.
    public func backward(_ dy: Matrix) -> Matrix {
        let dx = core.backward(Tensor4(n: dy.rows, c: dy.cols, h: 1, w: 1, data: dy.data))
        return Matrix(rows: dy.rows, cols: dy.cols, data: dx.data)
    }

    /// Tangent forward ẋ `[N, F]` -> ẏ `[N, F]` (BatchNorm2d's rule with H = W = 1).
    public func tangentForward(_ dotX: Matrix) -> Matrix {
        let y = core.tangentForward(Tensor4(n: dotX.rows, c: dotX.cols, h: 1, w: 1, data: dotX.data))
        return Matrix(rows: dotX.rows, cols: dotX.cols, data: y.data)
    }

    /// Tangent backward R{dy} `[N, F]` -> R{dx} `[N, F]`; accumulates R{dγ}, R{dβ} (BatchNorm2d's rule).
    public func tangentBackward(_ rdy: Matrix) -> Matrix {
        let dx = core.tangentBackward(Tensor4(n: rdy.rows, c: rdy.cols, h: 1, w: 1, data: rdy.data))
        return Matrix(rows: rdy.rows, cols: rdy.cols, data: dx.data)
    }
}
