/// BYOL's target-network update (docs/bissl.md, "Pretext methods"; Grill et al., arXiv:2006.07733):
/// `target = decay * target + (1 - decay) * online` for every parameter pair (BiSSL: decay 0.9995,
/// constant). BN buffers are not averaged (the reference implementation updates parameters only).
/// - Precondition: `target` and `online` list the same parameters in the same order (same names and sizes).
public func emaUpdate(target: [Parameter], online: [Parameter], decay: Float) {
    precondition(target.count == online.count, "emaUpdate: \(target.count) target vs \(online.count) online parameters")
    for (t, o) in zip(target, online) {
        precondition(t.name == o.name && t.count == o.count, "emaUpdate: '\(t.name)' does not match '\(o.name)'")
        let rest = 1 - decay
        t.value.withUnsafeMutableBufferPointer { tv in
            o.value.withUnsafeBufferPointer { ov in
                for i in tv.indices { tv[i] = decay * tv[i] + rest * ov[i] }
            }
        }
    }
}
