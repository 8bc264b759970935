import Engine
import Foundation

/// What an alignment will do and about how long it will take, from a short measurement on θ_0 before
/// the run starts; and the head-only warmup's step size from the same measurement.
///
/// **Warmup step size.** The warmup trains the linear head φ_D on frozen features x with
/// cross-entropy. The Hessian of the mean cross-entropy with respect to φ_D's weights is bounded by
/// ½·E[x xᵀ] (softmax covariance ⪯ ½·I), whose largest eigenvalue is at most ½·E‖x‖²; gradient
/// descent with heavy-ball momentum β is stable for lr < 2(1 + β)/λ_max. The features of a train-mode
/// ResNet have a size-independent per-channel scale, so E‖x‖² grows with the feature count F: for the
/// paper's lr 0.03 with β = 0.9, a ResNet-50 (F = 2048, E‖x‖² in the hundreds) is far past the bound and
/// the warmup loss climbs, while a narrow ResNet-18 (F = 64) is well inside. `warmupLR` is therefore
/// min(lr, 1/E‖x‖²), with E‖x‖² measured on a downstream batch: since λ_max ≤ ½·E‖x‖², 1/E‖x‖² ≤
/// 1/(2·λ_max), a quarter of the momentum-free bound 2/λ_max (and less of the bound with momentum).
///
/// **Time.** One forward, and one forward + backward, of the backbone on a downstream batch are
/// timed, after one untimed forward (the first pass pays one-time costs); a step of each kind is costed in those units: warmup 1 forward; lower step 1 forward +
/// backward on the 2·P pretext views (scaled from the D-image measurement by 2P/D; BYOL adds a target
/// forward); upper step 2 forward + backward on D images plus, with the implicit gradient, K CG
/// iterations of 1 (forward scheme) or 2 (central) forward + backward on 2·P images; a validation pass
/// 1 forward per D validation images, after the warmup and after each alternation.
public struct AlignPlan: Sendable, Equatable {
    public var warmupSteps: Int
    public var alternationSteps: Int
    /// Mean squared norm of θ_0's features over the measured batch.
    public var meanFeatureNorm2: Double
    /// Seconds of one backbone forward and of one forward + backward on the measured batch.
    public var forwardSeconds: Double, forwardBackwardSeconds: Double
    /// The estimated work time of the whole run.
    public var seconds: Double

    public var totalSteps: Int { warmupSteps + alternationSteps }

    /// The warmup's learning rate for a requested `lr`: min(lr, 1/E‖x‖²) (see above).
    public func warmupLR(requested lr: Double) -> Double {
        meanFeatureNorm2 > 0 ? min(lr, 1 / meanFeatureNorm2) : lr
    }

    /// Measures `backbone` (θ_0; its running statistics are not moved: `.trainFrozenStatistics`) on
    /// `batch` `[D, 3, S, S]` and costs the run.
    /// - Parameters:
    ///   - warmupSteps: E · ⌊N_train / D⌋.
    ///   - pretextBatch: P; `byol` adds the target network's forward to each lower step.
    ///   - cgIterations: K, 0 without the implicit gradient; `centralHVP`: 2 gradients per product, else 1.
    ///   - validationImages: images of a validation pass (0: none).
    public static func measure(backbone: ResNet, batch: Tensor4, warmupSteps: Int, alternations: Int, lowerSteps: Int,
                               upperSteps: Int, pretextBatch: Int, byol: Bool, cgIterations: Int, centralHVP: Bool,
                               validationImages: Int) -> AlignPlan {
        let d = Double(batch.n)
        // The first pass through a network allocates its buffers, faults their pages in and starts
        // the BLAS threads: timed, it cost several times a later forward (a 16x16 ResNet-18: 0.03 s
        // against a whole forward+backward of 0.01 s right after), and the warmup's steps, costed in
        // forwards, made a tiny run's estimate many times its length. One untimed forward first.
        _ = backbone.forward(batch, mode: .trainFrozenStatistics)
        var start = Date()
        let features = backbone.forward(batch, mode: .trainFrozenStatistics)
        let forward = Date().timeIntervalSince(start)
        var sum = 0.0
        for r in 0..<features.rows {
            var s = 0.0
            for c in 0..<features.cols { let v = Double(features.data[r * features.cols + c]); s += v * v }
            sum += s
        }
        start = Date()
        _ = backbone.forward(batch, mode: .trainFrozenStatistics)
        backbone.backward(Matrix(rows: features.rows, cols: features.cols))
        let forwardBackward = Date().timeIntervalSince(start)
        backbone.parameters.zeroGrad()

        let views = 2 * Double(pretextBatch) / d
        let lower = forwardBackward * views + (byol ? forward * views : 0)
        let upper = 2 * forwardBackward + Double(cgIterations) * (centralHVP ? 2 : 1) * forwardBackward * views
        let validation = forward * Double(validationImages) / d
        let passes = Double(alternations) + (warmupSteps > 0 ? 1 : 0)
        let seconds = Double(warmupSteps) * forward
            + Double(alternations) * (Double(lowerSteps) * lower + Double(upperSteps) * upper) + passes * validation
        return AlignPlan(warmupSteps: warmupSteps, alternationSteps: alternations * (lowerSteps + upperSteps),
                         meanFeatureNorm2: sum / Double(max(features.rows, 1)), forwardSeconds: forward,
                         forwardBackwardSeconds: forwardBackward, seconds: seconds)
    }

    /// `0.4 s`, `12 s`, `14 min`, `1.5 h`.
    public static func duration(_ seconds: Double) -> String {
        if seconds < 9.95 { return String(format: "%.1f s", seconds) }
        if seconds < 90 { return "\(Int(seconds.rounded())) s" }
        if seconds < 90 * 60 { return "\(Int((seconds / 60).rounded())) min" }
        return String(format: "%.1f h", seconds / 3600)
    }
}
