extension Sequence where Element == Int {
    /// The product of the values, or nil when one is negative or the product overflows `Int`: the size
    /// arithmetic for shapes and counts read from files, which must never trap (1 for an empty sequence).
    public var checkedProduct: Int? {
        var product = 1
        for value in self {
            let (next, overflow) = product.multipliedReportingOverflow(by: value)
            guard value >= 0, !overflow else { return nil }
            product = next
        }
        return product
    }
}
