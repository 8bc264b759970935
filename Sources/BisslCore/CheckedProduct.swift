extension Sequence where Element == Int {
    /// The product of the values, or nil when one is negative or the product of the non-zero values
    /// overflows `Int`: the size arithmetic for shapes and counts read from files, which must never
    /// trap (1 for an empty sequence).
    ///
    /// A zero makes the product 0, but the other values must still multiply without overflow: the
    /// C-contiguous strides of a shape (what `.pth`, `.npy` and HDF5 writers derive from it) are
    /// products of its trailing dimensions, so a zero-element shape such as `[0, 2^62, 2^62]` is
    /// refused rather than accepted by a reader and trapped on by a writer. NumPy (`np.empty`: "array
    /// is too big") and PyTorch (`torch.empty`: "Stride calculation overflowed") refuse such shapes too.
    public var checkedProduct: Int? {
        var product = 1
        var hasZero = false
        for value in self {
            guard value >= 0 else { return nil }
            if value == 0 { hasZero = true; continue }
            let (next, overflow) = product.multipliedReportingOverflow(by: value)
            if overflow { return nil }
            product = next
        }
        return hasZero ? 0 : product
    }
}
