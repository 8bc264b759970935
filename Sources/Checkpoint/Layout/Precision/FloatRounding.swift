/// Conversions between floating-point formats with IEEE 754 round-to-nearest, ties-to-even, done
/// directly from the source bits (a float64 is never rounded to float32 first, so there is no
/// double rounding).
///
/// Matches `numpy.ndarray.astype(numpy.float16)` (numpy `npy_floatbits_to_halfbits` /
/// `npy_doublebits_to_halfbits`) and `torch.Tensor.to(torch.bfloat16)` (c10 `round_to_nearest_even`)
/// bit for bit on finite and infinite values; NaN becomes the quiet NaN `0x7E00` (f16) / `0x7FC0`
/// (bf16) with the sign kept. Checked against `Tests/Fixtures/layout/rounding.json`.
public enum FloatRounding {
    /// float64 -> IEEE binary16 bits.
    public static func halfBits(_ x: Double) -> UInt16 {
        UInt16(round(x, exponentBits: 5, mantissaBits: 10))
    }

    /// float64 -> bfloat16 bits (8 exponent bits, 7 mantissa bits; the upper half of a float32).
    public static func bfloat16Bits(_ x: Double) -> UInt16 {
        UInt16(round(x, exponentBits: 8, mantissaBits: 7))
    }

    /// float64 -> float32 (Swift's conversion is correctly rounded, ties to even).
    public static func float32(_ x: Double) -> Float { Float(x) }

    /// Rounds `x` to a binary format with `exponentBits` and `mantissaBits` (< 23 each), returning
    /// its bit pattern in the low `1 + exponentBits + mantissaBits` bits.
    static func round(_ x: Double, exponentBits e: Int, mantissaBits m: Int) -> UInt32 {
        let signBit = UInt32(1) << UInt32(e + m)
        let sign: UInt32 = x.sign == .minus ? signBit : 0
        let expAllOnes = (UInt32(1) << UInt32(e)) - 1
        if x.isNaN { return sign | (expAllOnes << UInt32(m)) | (UInt32(1) << UInt32(m - 1)) }
        if x.isInfinite { return sign | (expAllOnes << UInt32(m)) }
        if x == 0 { return sign }
        let bias = (1 << (e - 1)) - 1
        let bits = x.bitPattern
        var exponent = Int((bits >> 52) & 0x7ff) - 1023
        var significand = bits & ((1 << 52) - 1)                 // 52 fraction bits
        if exponent == -1023 {                                   // float64 subnormal: far below any target
            exponent = -1022
        } else {
            significand |= 1 << 52                               // implicit bit
        }
        let minExponent = 1 - bias
        // Bits to drop from the 53-bit significand: 52 - m for normals, more below the normal range.
        let shift = 52 - m + max(0, minExponent - exponent)
        let rounded = roundShift(significand, by: shift)
        if exponent < minExponent {
            // Subnormal target (a carry into bit m yields the smallest normal, which encodes correctly).
            return sign | UInt32(rounded)
        }
        var q = rounded
        var biased = exponent + bias
        if q >> UInt64(m + 1) != 0 { q >>= 1; biased += 1 }      // carry out of the significand
        if biased >= Int(expAllOnes) { return sign | (expAllOnes << UInt32(m)) }
        return sign | (UInt32(biased) << UInt32(m)) | UInt32(q & ((1 << UInt64(m)) - 1))
    }

    /// `value >> shift` rounded to nearest, ties to even.
    static func roundShift(_ value: UInt64, by shift: Int) -> UInt64 {
        if shift <= 0 { return value << UInt64(-shift) }
        if shift >= 64 { return 0 }                                 // value < 2^53 <= 2^(shift-1): below half
        let q = value >> UInt64(shift)
        let rem = value & ((1 << UInt64(shift)) - 1)
        let half = UInt64(1) << UInt64(shift - 1)
        return (rem > half || (rem == half && q & 1 == 1)) ? q + 1 : q
    }
}
