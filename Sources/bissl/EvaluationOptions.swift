import ArgumentParser

/// The options `eval` and `compare` share: the labelled data every entry is scored on, the image
/// side, the seed of the bootstrap intervals, JSON output.
struct EvaluationOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Labelled evaluation data (dataset URI, e.g. h5:data/digits/digits.h5#test).", valueName: "URI"))
    var data: String

    @Option(name: .customLong("image-size"), parsing: .unconditional, help: ArgumentHelp("Image side S (default: each entry's fine-tuning image size, else the data's own).", valueName: "S"))
    var imageSize: Int?

    @Option(parsing: .unconditional, help: "Seed of the bootstrap intervals (default 0).", transform: SeedArgument.parse)
    var seed: UInt64?

    @Flag(help: "Print the result as JSON.")
    var json = false
}
