import ArgumentParser

/// `--augment SPEC` of `bissl finetune` and `bissl align` (`DownstreamAugmentation`): the random
/// augmentation of the downstream training images, recorded as `augment` in the run config and the
/// entry's hyperparameters. Checked by the job's options (`FineTuneOptions`, `AlignOptions`).
struct AugmentOption: ParsableArguments {
    @Option(help: ArgumentHelp("""
        Downstream training augmentation: none, or crop[:MIN_AREA] and/or flip joined by '+' \
        (crop: RandomResizedCrop with area in [MIN_AREA, 1], aspect ratio in [0.5, 1]; flip: horizontal, \
        p = 0.5; without crop the test transform's resize and centre crop). Default crop:0.08+flip.
        """, valueName: "SPEC"))
    var augment: String?
}
