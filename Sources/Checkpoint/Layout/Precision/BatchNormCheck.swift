/// Checks BatchNorm running statistics on import.
///
/// `running_var` is a variance: BatchNorm divides by `sqrt(running_var + eps)` in eval mode
/// (`torch.nn.functional.batch_norm`), so a zero makes the layer depend on `eps` alone, a negative
/// value gives NaN, inf zeroes the feature and NaN poisons every output. Such values appear when a
/// model is stored in float16 (1e-8 becomes 0, 7e4 becomes inf) or when training diverged.
public enum BatchNormCheck {
    /// One warning per `running_var` holding zero, negative, infinite or NaN values and per
    /// `running_mean` holding infinite or NaN values, e.g.
    /// `backbone layer1.0.bn3.running_var: 1 zero, 1 inf of 16 values (degenerate BatchNorm statistics)`.
    /// - Parameter component: prefixed to each key in the messages (`backbone`).
    public static func warnings(_ dict: StateDict, component: String) -> [String] {
        var out: [String] = []
        for (key, t) in dict where t.dtype.isFloatingPoint {
            let isVar = key.hasSuffix("running_var")
            guard isVar || key.hasSuffix("running_mean") else { continue }
            var zero = 0, negative = 0, inf = 0, nan = 0
            for x in t.doubles() {
                if x.isNaN { nan += 1 } else if x.isInfinite { inf += 1 } else if x == 0 { zero += 1 } else if x < 0 { negative += 1 }
            }
            var parts: [String] = []
            if isVar && zero > 0 { parts.append("\(zero) zero") }
            if isVar && negative > 0 { parts.append("\(negative) negative") }
            if inf > 0 { parts.append("\(inf) inf") }
            if nan > 0 { parts.append("\(nan) NaN") }
            guard !parts.isEmpty else { continue }
            out.append("\(component) \(key): \(parts.joined(separator: ", ")) of \(t.count) values (degenerate BatchNorm statistics\(t.dtype == .float16 || t.dtype == .bfloat16 ? "; stored as \(t.dtype.rawValue), which cannot hold very small or large variances" : ""))")
        }
        return out
    }
}
