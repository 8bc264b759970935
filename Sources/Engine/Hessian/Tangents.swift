/// Forward-over-reverse differentiation (Pearlmutter, "Fast exact multiplication by the Hessian",
/// Neural Computation 6(1), 1994): the exact Hessian-vector product `H v` of a loss L(θ) is the
/// directional derivative of the backward pass along `v`, `R{∇L} = d/dε ∇L(θ + εv)|ε=0`.
///
/// Every engine layer has, beside `forward` and `backward`, a `tangentForward` (ẏ from ẋ and the
/// parameter directions `Parameter.tangent`) and a `tangentBackward` (R{dx} from R{dy}; R{dW}
/// accumulated into `Parameter.grad`). Both read what the PRIMAL forward and backward at θ left in
/// the layer: inputs, ReLU masks and max-pool winners (held fixed: ReLU'' = 0 almost everywhere, the
/// convention of PyTorch's double backward), batch statistics and, recorded only inside `record`, the
/// upstream gradients dy. One primal forward + backward inside `record` therefore serves any number of
/// products at the same θ and batch; each product then costs one tangent forward and one tangent
/// backward (about two gradients). Derivations: docs/bissl.md, "Exact Hessian-vector products".
public enum Tangents {
    /// True inside `record`: backward passes keep their upstream gradient dy for the tangent backward.
    @TaskLocal public static var recording = false

    /// Runs `body` (a primal forward + backward) so that every layer keeps what its tangent rules need.
    public static func record<T>(_ body: () throws -> T) rethrows -> T {
        try $recording.withValue(true, operation: body)
    }
}
