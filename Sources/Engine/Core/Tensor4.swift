/// A float32 activation batch in NCHW order, contiguous: element `(n, c, h, w)` is at
/// `((n * c + c) * h + h) * w + w`. Value type (copy-on-write through `[Float]`).
public struct Tensor4: Equatable, Sendable {
    /// Batch size, channels, height, width.
    public var n: Int, c: Int, h: Int, w: Int
    /// `n * c * h * w` values, C order.
    public var data: [Float]

    /// A zero-filled tensor of shape `[n, c, h, w]`.
    public init(n: Int, c: Int, h: Int, w: Int) {
        self.n = n; self.c = c; self.h = h; self.w = w
        self.data = [Float](repeating: 0, count: n * c * h * w)
    }

    /// A tensor over existing values; `data.count` must equal `n * c * h * w`.
    public init(n: Int, c: Int, h: Int, w: Int, data: [Float]) {
        precondition(data.count == n * c * h * w, "Tensor4: \(data.count) values for shape [\(n), \(c), \(h), \(w)]")
        self.n = n; self.c = c; self.h = h; self.w = w
        self.data = data
    }

    /// `[n, c, h, w]`.
    public var shape: [Int] { [n, c, h, w] }
    /// Number of elements.
    public var count: Int { data.count }
}

/// A float32 row-major matrix `[rows, cols]`: features, logits, embeddings (one row per sample).
public struct Matrix: Equatable, Sendable {
    public var rows: Int, cols: Int
    /// `rows * cols` values, row-major.
    public var data: [Float]

    /// A zero-filled `[rows, cols]` matrix.
    public init(rows: Int, cols: Int) {
        self.rows = rows; self.cols = cols
        self.data = [Float](repeating: 0, count: rows * cols)
    }

    /// A matrix over existing values; `data.count` must equal `rows * cols`.
    public init(rows: Int, cols: Int, data: [Float]) {
        precondition(data.count == rows * cols, "Matrix: \(data.count) values for shape [\(rows), \(cols)]")
        self.rows = rows; self.cols = cols
        self.data = data
    }

    public var shape: [Int] { [rows, cols] }

    /// Rows `range` of this matrix (a copy).
    public func rows(_ range: Range<Int>) -> Matrix {
        Matrix(rows: range.count, cols: cols, data: Array(data[(range.lowerBound * cols)..<(range.upperBound * cols)]))
    }

    /// Rows of `top` followed by rows of `bottom` (same column count), like `torch.cat([top, bottom], 0)`.
    public static func stacked(_ top: Matrix, _ bottom: Matrix) -> Matrix {
        precondition(top.cols == bottom.cols, "Matrix.stacked: \(top.cols) vs \(bottom.cols) columns")
        return Matrix(rows: top.rows + bottom.rows, cols: top.cols, data: top.data + bottom.data)
    }
}

/// How a forward pass treats BatchNorm (PyTorch `module.train()` / `module.eval()`), plus the
/// probe mode used for Hessian-vector products.
public enum Mode: Sendable {
    /// Running statistics normalise; nothing is updated (`model.eval()`).
    case eval
    /// Batch statistics normalise; running statistics and `num_batches_tracked` are updated (`model.train()`).
    case train
    /// Batch statistics normalise like `.train`, but running statistics are left untouched: the
    /// finite-difference probes of a Hessian-vector product must not move them.
    case trainFrozenStatistics

    /// Whether batch statistics are used.
    public var usesBatchStatistics: Bool { self != .eval }
}

extension Array where Element == Float {
    /// `count` floats written entirely by `fill` (no zero-fill first): for buffers that a GEMM with
    /// `beta = 0`, a copy or an elementwise loop overwrites in full.
    @inline(__always)
    init(count: Int, fill: (UnsafeMutableBufferPointer<Float>) -> Void) {
        self.init(unsafeUninitializedCapacity: count) { p, initialized in
            fill(p)
            initialized = count
        }
    }
}
