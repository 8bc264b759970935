import Foundation

/// Cuts a tensor out of its storage the way `torch.Tensor.set_(storage, offset, size, stride)`
/// views it, and copies it to C-contiguous order (torch/_utils.py `_rebuild_tensor_v2`;
/// element `i` of a view is `storage[offset + sum(index_d * stride_d)]`).
enum PyTorchTensorView {
    /// The most bytes a view larger than its storage (overlapping elements) materialises to: 256 MiB.
    static let maxExpandedBytes = 1 << 28

    /// - Parameters:
    ///   - storage: the storage's bytes, little-endian, `storageElements * dtype.size` of them.
    ///   - dtype: element type of the tensor.
    ///   - offset, size, stride: in elements (torch's `storage_offset()`, `size()`, `stride()`).
    ///   - name: key path of the tensor, for messages.
    ///   - willCopy: called with the number of bytes before they are allocated for a copy (a view
    ///     that is not the whole storage); it throws to refuse them.
    /// - Returns: a C-contiguous tensor of shape `size`.
    /// - Throws: `CheckpointError.corrupt` when the view reaches past the end of the storage, or
    ///   repeats storage elements into more than `max(storage bytes, maxExpandedBytes)` bytes.
    static func materialize(storage: Data, dtype: DType, offset: Int, size: [Int], stride: [Int],
                            name: String, willCopy: (Int) throws -> Void) throws -> Tensor {
        let es = dtype.size
        let storageElements = storage.count / es
        guard let count = size.checkedProduct else {
            throw CheckpointError.corrupt("\(name): size \(size) is negative or too large")
        }
        if count == 0 { return try Tensor(dtype: dtype, shape: size, data: Data()) }
        // Index of the view's last element; every term is checked so absurd sizes cannot overflow.
        var last = offset
        for (n, s) in zip(size, stride) {
            let (span, o1) = (n - 1).multipliedReportingOverflow(by: s)
            let (sum, o2) = last.addingReportingOverflow(span)
            guard !o1, !o2 else { throw CheckpointError.corrupt("\(name): size \(size) with stride \(stride) is too large") }
            last = sum
        }
        guard offset >= 0, last < storageElements else {
            throw CheckpointError.corrupt(
                "\(name): view (offset \(offset), size \(size), stride \(stride)) reaches element \(last) of a storage of \(storageElements) elements")
        }
        let base = storage.startIndex
        if isContiguous(size: size, stride: stride) {
            // The whole storage: share its buffer instead of copying (the common state-dict case).
            if offset == 0, count * es == storage.count, storage.startIndex == 0 { return try Tensor(dtype: dtype, shape: size, data: storage) }
            let start = base + offset * es
            try willCopy(count * es)
            return try Tensor(dtype: dtype, shape: size, data: storage.subdata(in: start..<(start + count * es)))
        }
        // Only overlapping views (a stride of 0, torch's expand()) hold more elements than their storage.
        guard let bytes = [count, es].checkedProduct, bytes <= max(storage.count, maxExpandedBytes) else {
            throw CheckpointError.corrupt(
                "\(name): view (size \(size), stride \(stride)) repeats \(storage.count) bytes of storage into more than \(maxExpandedBytes) bytes; refusing")
        }
        try willCopy(bytes)
        var out = Data(count: bytes)
        out.withUnsafeMutableBytes { (dst: UnsafeMutableRawBufferPointer) in
            storage.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
                var written = 0
                func copy(dim: Int, at element: Int) {
                    if dim == size.count {
                        dst.baseAddress!.advanced(by: written).copyMemory(from: src.baseAddress!.advanced(by: element * es), byteCount: es)
                        written += es
                        return
                    }
                    var e = element
                    for _ in 0..<size[dim] {
                        copy(dim: dim + 1, at: e)
                        e += stride[dim]
                    }
                }
                copy(dim: 0, at: offset)
            }
        }
        return try Tensor(dtype: dtype, shape: size, data: out)
    }

    /// C-contiguous strides for `size` (torch's `contiguous()` strides).
    static func contiguousStrides(_ size: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: size.count)
        var acc = 1
        for d in stride(from: size.count - 1, through: 0, by: -1) {
            strides[d] = acc
            acc *= max(size[d], 1)
        }
        return strides
    }

    /// True when the view is C-contiguous (dimensions of size 1 may have any stride, as in torch).
    static func isContiguous(size: [Int], stride: [Int]) -> Bool {
        var expected = 1
        for d in Swift.stride(from: size.count - 1, through: 0, by: -1) where size[d] != 1 {
            if stride[d] != expected { return false }
            expected *= size[d]
        }
        return true
    }
}
