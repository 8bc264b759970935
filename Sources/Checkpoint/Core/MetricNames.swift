/// Metric names that carry their meaning: the split (`val_`, `test_`), the model part (`upper_` for
/// BiSSL's upper model θ_D with φ_D), the objective (`pretext_loss`). Entries written before these
/// names recorded a few ambiguous ones; `meaningful` gives what each meant, so a listing never shows
/// two meanings under one name.
public enum MetricNames {
    /// The name a metric of an entry of `stage` stands for: `finetune` `top1` / `best_top1` /
    /// `trial<k>_top1` (validation figures) -> `val_top1` / `best_val_top1` / `trial<k>_val_top1`;
    /// `bissl` `val_top1*` (the upper model's) -> `upper_val_top1*`; `pretext` `loss*` -> `pretext_loss*`;
    /// any other name unchanged.
    public static func meaningful(_ name: String, stage: String) -> String {
        switch stage {
        case "finetune":
            if name == "top1" { return "val_top1" }
            if name == "best_top1" { return "best_val_top1" }
            if name.hasPrefix("trial"), name.hasSuffix("_top1"), !name.hasSuffix("val_top1") {
                return String(name.dropLast("_top1".count)) + "_val_top1"
            }
        case "bissl":
            if name.hasPrefix("val_top1") { return "upper_" + name }
        case "pretext":
            if name == "loss" { return "pretext_loss" }
            if name == "lossMeanLast10Percent" { return "pretext_loss_mean_last_10pct" }
        default:
            break
        }
        return name
    }
}
