import Checkpoint
import Foundation

/// A model card for a zoo entry: Markdown with YAML front matter in the Hugging Face model-card
/// convention (https://huggingface.co/docs/hub/model-cards: `library_name`, `tags`, `datasets`,
/// `base_model`, `pipeline_tag`, `metrics`, `model-index`, `license`), and a body that states what
/// the zoo recorded: the lineage with content ids, dataset fingerprints, every hyperparameter and
/// seed, the command line of each stage, metrics and warnings.
///
/// Rule: every statement comes from a recorded field (`CardLineage`); a field provenance lacks is
/// left out, never filled with a default. The one exception is said as such: the preprocessing
/// section names what a hub folder's `config.json` assumes where nothing is recorded (its input
/// size). The card is a pure function of the lineage and the preprocessing derived from it
/// (`HubFolder.Preprocessing`), so the same lineage always gives the same bytes.
public enum ModelCard {
    /// Metrics that are accuracies on a labelled split (`model-index` entries): recorded name -> label.
    static let accuracyMetrics: [(name: String, label: String)] = [
        ("top1", "top-1 accuracy, final epoch of the chosen trial"),
        ("best_top1", "top-1 accuracy, best epoch of the chosen trial"),
        ("val_top1", "top-1 accuracy, last validation"),
        ("val_top1_best", "top-1 accuracy, best validation"),
        ("best_val_top1", "top-1 accuracy, best validation of the chosen trial"),
        ("linear_top1", "linear-probe top-1 accuracy"),
        ("knn_top1", "k-NN top-1 accuracy"),
    ]

    /// The card's Markdown text.
    /// - Parameter preprocessing: the image size the lineage records (nearest stage first), as the
    ///   hub folder's `config.json` states it (`HubFolder.configJSON`).
    public static func render(_ lineage: CardLineage, preprocessing: HubFolder.Preprocessing) -> String {
        frontMatter(lineage) + "\n" + body(lineage, preprocessing: preprocessing)
    }

    // MARK: front matter

    static func frontMatter(_ lineage: CardLineage) -> String {
        let entry = lineage.entry
        let p = entry.provenance
        var pairs: [(String, YAMLValue)] = [("library_name", .string("bissl"))]
        if let license = license(lineage) { pairs.append(("license", .string(license))) }
        let classifier = entry.components.contains("classifier")
        var tags = ["bissl", "resnet"]
        if let arch = entry.arch { tags.append(arch) }
        tags.append(classifier ? "image-classification" : "image-feature-extraction")
        // A carried record (`Provenance.carriedFrom`, of the entry or of any ancestor) is an imported
        // file's claim: the front matter, which readers take as fact, publishes none of its method,
        // stage or data; the body shows them marked *carried*.
        let recorded = lineage.stages.filter { $0.provenance?.carriedFrom == nil }
        for stage in recorded {
            if let m = stage.provenance?.method, !tags.contains(m) { tags.append(m) }
            if let s = stage.provenance?.stage, ["pretext", "bissl"].contains(s), !tags.contains("self-supervised") {
                tags.append("self-supervised")
            }
        }
        pairs.append(("tags", .list(tags.map { .string($0) })))
        var datasets: [String] = []
        for stage in recorded {
            for d in stage.provenance?.datasets ?? [] where !datasets.contains(d.uri) { datasets.append(d.uri) }
        }
        if !datasets.isEmpty { pairs.append(("datasets", .list(datasets.map { .string($0) }))) }
        // A carried record (`Provenance.carriedFrom`) is an imported file's claim: a parent this zoo
        // never held is not named as the base model, and its metrics are not published as results.
        let carried = p?.carriedFrom != nil
        let held = Set(lineage.stages.filter { $0.status != "unknown" }.map(\.id))
        let parents = (p?.parents ?? []).filter { !carried || held.contains($0.id) }
        if parents.count == 1 {
            pairs.append(("base_model", .string(parents[0].id)))
            if parents[0].relation == "finetuned-from" { pairs.append(("base_model_relation", .string("finetune"))) }
        } else if parents.count > 1 {
            pairs.append(("base_model", .list(parents.map { .string($0.id) })))
        }
        pairs.append(("pipeline_tag", .string(classifier ? "image-classification" : "image-feature-extraction")))
        let results = carried ? [] : evaluationResults(entry)
        if !results.isEmpty {
            pairs.append(("metrics", .list([.string("accuracy")])))
            // One result (task and dataset) holding every metric, as huggingface_hub groups them.
            let data = results[0].dataset
            let metrics: [YAMLValue] = results.map { r in
                .map([("type", .string("accuracy")), ("value", .number(r.value)), ("name", .string(r.label))])
            }
            let modelResults: [YAMLValue] = [.map([
                ("task", .map([("type", .string("image-classification")), ("name", .string("Image Classification"))])),
                ("dataset", .map([("name", .string(data.uri)), ("type", .string(data.uri)), ("split", .string(data.role))])),
                ("metrics", .list(metrics)),
            ])]
            pairs.append(("model-index", .list([.map([("name", .string(title(entry))), ("results", .list(modelResults))])])))
        }
        return YAMLValue.document(pairs)
    }

    /// A recorded accuracy with the dataset it was measured on.
    struct Result {
        var metric: String
        var label: String
        var value: Double
        var dataset: Provenance.Dataset
    }

    /// The entry's accuracy metrics that name their data: all measured on its `downstream-val` (else
    /// `eval`) dataset, the same for every result. Non-finite values are left out.
    static func evaluationResults(_ stage: CardLineage.Stage) -> [Result] {
        guard let p = stage.provenance,
              let data = p.datasets.first(where: { $0.role == "downstream-val" }) ?? p.datasets.first(where: { $0.role.hasPrefix("eval") })
        else { return [] }
        return accuracyMetrics.compactMap { m in
            guard let v = p.metrics[m.name], v.isFinite else { return nil }
            return Result(metric: m.name, label: m.label, value: v, dataset: data)
        }
    }

    /// The license a stage's source file states in its metadata (`license`), nearest the entry first.
    static func license(_ lineage: CardLineage) -> String? {
        for stage in lineage.stages.reversed() {
            if let l = stage.provenance?.source?.metadata["license"], !l.isEmpty { return l }
        }
        return nil
    }

    static func title(_ stage: CardLineage.Stage) -> String {
        stage.labels.first ?? "\(stage.arch ?? "model") \(stage.id.prefix(12))"
    }

    // MARK: body

    /// The body, rendered from the lineage with every recorded string's control characters escaped
    /// (`CardLineage.escapingControlCharacters`): each field stays on its line of the Markdown.
    static func body(_ recorded: CardLineage, preprocessing: HubFolder.Preprocessing) -> String {
        let lineage = recorded.escapingControlCharacters
        let entry = lineage.entry
        var out = "# \(title(entry))\n\n"
        var what = "A \(entry.arch.map(code) ?? "model")"
        if let stage = entry.provenance?.stage { what += " made by the \(code(stage)) stage" }
        out += "\(what), zoo entry \(code(entry.id)) (content id: SHA-256 over its tensors and architecture record, "
        out += "schemas/checkpoint-v1.md). Everything below is what bissl recorded for this entry and its "
        out += "ancestors; what the records lack is not stated.\n\n"
        if lineage.stages.contains(where: { $0.provenance?.carriedFrom != nil }) {
            out += "Except a record marked *carried*: bissl did not make it, it imported a file that claims it; it is shown "
            out += "as that file states it, unchecked.\n\n"
        }

        out += "## Lineage\n\n| # | entry (content id) | labels | stage | method | from its parent | finished |\n|---|---|---|---|---|---|---|\n"
        for (i, stage) in lineage.stages.enumerated() {
            let p = stage.provenance
            let fromParent = (p?.parents ?? []).map { "\($0.relation) \(code(String($0.id.prefix(12))))\($0.note.map { ": " + $0 } ?? "")" }.joined(separator: "; ")
                + (p?.carriedFrom != nil && !(p?.parents ?? []).isEmpty ? " (*carried*)" : "")
            let status = stage.status == "listed" ? "" : " (\(stage.status))"
            out += "| \(i + 1) | \(code(cell(stage.id)))\(status) | \(cell(stage.labels.joined(separator: ", "))) | \(cell(p?.stage ?? "")) | \(cell(p?.method ?? "")) | \(cell(fromParent)) | \(cell(p?.endedAt ?? "")) |\n"
        }

        let data = lineage.stages.flatMap { s in (s.provenance?.datasets ?? []).map { (s, $0) } }
        if !data.isEmpty {
            out += "\n## Data\n\n| stage | role | URI | SHA-256 of the bytes read |\n|---|---|---|---|\n"
            for (s, d) in data {
                let carried = s.provenance?.carriedFrom != nil ? " (*carried*)" : ""
                out += "| \(code(cell(String(s.id.prefix(12))))) \(cell(s.provenance?.stage ?? ""))\(carried) | \(cell(d.role)) | \(cell(d.uri)) | \(code(cell(d.fingerprint))) |\n"
            }
        }

        let results = evaluationResults(entry)
        if !results.isEmpty {
            let intervals = results.map { interval($0.metric, in: entry.provenance!.metrics) }
            out += "\n## Evaluation\n\n| metric (as recorded) | value | \(intervals.contains { $0 != nil } ? "interval | " : "")data (role) |\n"
            out += "|---|---|\(intervals.contains { $0 != nil } ? "---|" : "")---|\n"
            for (r, iv) in zip(results, intervals) {
                let ivCell = intervals.contains { $0 != nil } ? "\(iv ?? "") | " : ""
                out += "| \(code(cell(r.metric))): \(cell(r.label)) | \(r.value) | \(ivCell)\(cell(r.dataset.uri)) (\(cell(r.dataset.role))) |\n"
            }
            if let step = entry.provenance?.carriedStep {
                out += "\n*carried*: these values are claims of the imported file \(code(step.fileName)); bissl did not measure them.\n"
            }
        }

        out += preprocessingSection(preprocessing, entry: entry)

        out += "\n## Stages\n"
        for (i, stage) in lineage.stages.enumerated() {
            out += "\n### \(i + 1). \(code(String(stage.id.prefix(12))))\(stage.provenance.map { " \($0.stage)" } ?? "")\n\n"
            guard let p = stage.provenance else {
                out += "Named as a parent, but this zoo never held it: nothing is recorded.\n"
                continue
            }
            if stage.status == "removed" { out += "Removed from the zoo; this is the provenance its tombstone keeps.\n\n" }
            if let step = p.carriedStep {
                out += "*carried*: this record is the claim of the file \(code(step.fileName)) (SHA-256 \(code(step.sha256))), "
                out += "imported \(step.importedAt) by \(code(shellLine(step.commandLine))); bissl did not record what follows.\n\n"
            }
            out += "- tool: \(p.tool.name) \(p.tool.version)\n"
            if let m = p.method { out += "- method: \(m)\n" }
            if let a = p.startedAt { out += "- started: \(a)\n" }
            if let b = p.endedAt { out += "- finished: \(b)\n" }
            if let s = p.source {
                out += "- source file: \(code(s.fileName)) (\(s.format), \(s.container)), SHA-256 \(code(s.sha256))"
                out += s.keyPath.isEmpty ? "\n" : ", state dict at \(code(s.keyPath))\n"
                for rule in s.rules { out += "  - rule: \(rule)\n" }
            }
            for (name, seed) in p.seeds.sorted(by: { $0.key < $1.key }) { out += "- seed \(code(name)): \(seed)\n" }
            if !p.hyperparameters.isEmpty {
                out += "\n| hyperparameter | value |\n|---|---|\n"
                for (k, v) in p.hyperparameters.sorted(by: { $0.key < $1.key }) { out += "| \(code(cell(k))) | \(cell(v.description)) |\n" }
            }
            if !p.metrics.isEmpty {
                out += "\n| metric | value |\n|---|---|\n"
                for (k, v) in p.metrics.sorted(by: { $0.key < $1.key }) { out += "| \(code(cell(k))) | \(v) |\n" }
            }
            if !p.warnings.isEmpty {
                out += "\nWarnings recorded:\n\n"
                for w in p.warnings { out += "- \(w)\n" }
            }
            if !p.commandLine.isEmpty {
                out += "\nCommand (as recorded; paths are those of the machine that ran it):\n\n```sh\n\(shellLine(p.commandLine))\n```\n"
            }
        }
        return out
    }

    /// How images are prepared for the network, in words, as a hub folder's `config.json` states it
    /// (`HubFolder.configJSON`: `pretrained_cfg`, `bissl.preprocessing`, `bissl.input_size`): bissl's
    /// evaluation transform for an entry a bissl stage made (`HubFolder.Preprocessing.bisslStage`);
    /// for an imported one, that nothing records it, so `config.json` leaves the transform out (also
    /// when its record is carried from an imported `.h5`: a stage that file claims is not bissl's); and
    /// the input size the lineage records, or, without one, that `config.json`'s 224 is an assumption.
    static func preprocessingSection(_ p: HubFolder.Preprocessing, entry: CardLineage.Stage) -> String {
        var out = "\n## Preprocessing\n\n"
        if let stage = entry.provenance.flatMap({ HubFolder.Preprocessing.bisslStage($0) }) {
            out += "bissl's evaluation transform, which the \(code(stage)) stage used: shorter side resized to S * 256 / 224 "
            out += "(bilinear), centre crop of S x S, pixels scaled to [0, 1] and normalised with the ImageNet mean and "
            out += "standard deviation; a hub folder's `config.json` states it in `pretrained_cfg` (`crop_pct` 0.875)."
        } else if let carried = entry.provenance, let step = carried.carriedStep {
            out += "Not recorded: the entry was imported from \(code(step.fileName)), whose record (stage \(code(carried.stage))) is that "
            out += "file's claim (*carried*), so bissl does not state its preprocessing. A hub folder written "
            out += "from it (`bissl export --to hub`) leaves `interpolation`, `crop_pct`, `crop_mode`, `mean` and `std` "
            out += "out of its `config.json`, as `bissl.preprocessing` there says; readers such as timm then apply their own defaults."
        } else {
            out += "Not recorded: the entry was imported and its source states no preprocessing. A hub folder written "
            out += "from it (`bissl export --to hub`) leaves `interpolation`, `crop_pct`, `crop_mode`, `mean` and `std` "
            out += "out of its `config.json`, as `bissl.preprocessing` there says; readers such as timm then apply their own defaults."
        }
        if let size = p.imageSize {
            out += " Input size: \(size) x \(size) (S = \(size)), the image size the lineage records (`input_size` [3, \(size), \(size)])."
        } else {
            out += " Input size: not recorded by any stage. The hub folder's `input_size` [3, 224, 224] is an assumption "
            out += "(torchvision's convention), not a record, as `bissl.input_size` there says."
        }
        return out + "\n"
    }

    /// `[low, high]` from the metrics `<metric>_ci_low` and `<metric>_ci_high`, when both are recorded.
    static func interval(_ metric: String, in metrics: [String: Double]) -> String? {
        guard let lo = metrics[metric + "_ci_low"], let hi = metrics[metric + "_ci_high"] else { return nil }
        return "[\(lo), \(hi)]"
    }

    /// A Markdown table cell (GitHub Flavored Markdown, tables: `\\|` inside a cell, code spans
    /// included): `|` escaped. Its text comes from the escaped lineage (`body`), so it holds no line
    /// break or other control character.
    static func cell(_ s: String) -> String {
        s.replacingOccurrences(of: "|", with: "\\|")
    }

    /// argv as one POSIX shell line: words of safe characters as they are, others single-quoted.
    static func shellLine(_ argv: [String]) -> String {
        argv.map { word in
            let safe = !word.isEmpty && word.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_./=:,+@%".unicodeScalars.contains($0))
            }
            return safe ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }
}
