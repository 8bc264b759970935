/// `dst[i] = src[i]` for `count` floats of two buffers that do not overlap. Runs of up to 64 floats (the
/// rows of small planes: the padded planes of `DirectConvolution`, the gathers and moves around `Conv2d`'s
/// GEMMs) are copied inline, 8 lanes at a time, instead of through a `memmove` call each; longer runs by
/// `memmove`. The same values either way (a copy).
@inline(__always) func copyFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    guard count <= 64 else { dst.update(from: src, count: count); return }
    let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
    var i = 0
    while i + 8 <= count {
        d.storeBytes(of: s.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self), toByteOffset: 4 * i, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count { dst[i] = src[i]; i += 1 }
}
