import ArgumentParser
import Checkpoint

/// Layout options shared by `convert`, `inspect` and `import`.
struct ConversionOptions: ParsableArguments {
    @Option(name: .customLong("select"), help: ArgumentHelp(
        "Key path of the state dict to take, dotted (e.g. model_ema, state_dict.module).", valueName: "KEYPATH"))
    var select: String?

    @Option(name: .customLong("strip-prefix"), help: ArgumentHelp(
        "Prefix to strip from every key (e.g. module.): whole dot-separated parts ('module' means 'module.'; 'mod' does not match it). Every key must have it.", valueName: "P"))
    var stripPrefix: String?

    @Option(help: "Components to keep: backbone or all.")
    var component: ComponentSelection = .all

    var layout: LayoutOptions { LayoutOptions(select: select, stripPrefix: stripPrefix, components: component) }
}

extension ComponentSelection: ExpressibleByArgument {}
extension DType: ExpressibleByArgument {}
extension InterchangeFormat: ExpressibleByArgument {}
