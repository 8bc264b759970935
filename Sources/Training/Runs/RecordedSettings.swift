import Checkpoint

/// One spelling for the keys of recorded settings. Run configs (`run.json` "config") and provenance
/// hyperparameters are written in camelCase (`imageSize`, `batchSize`, `chosenLR`). Metric names are
/// not settings and are not covered: some are camelCase (`knnTop1`, `durationSeconds`), others still
/// snake_case (`val_top1`, `best_top1`, `loss_lower`), which the zoo's headline metrics read as they
/// are. Zoos and run directories written before
/// this rule hold some keys in snake_case (`bissl finetune` wrote `image_size`, `batch_size`, ...;
/// `bissl pretrain` also `image_size`), so readers of an existing entry or run look settings up here,
/// where the old spellings of a key resolve too.
public enum RecordedSettings {
    /// `image_size` or `image-size` -> `imageSize`: a `_` or `-` between a letter or digit and a
    /// letter goes, and that letter is capitalised; every other character stays (`trial0_top1` ->
    /// `trial0Top1`, `run.segments` unchanged). A camelCase key comes back unchanged.
    public static func camelCase(_ key: String) -> String {
        let chars = Array(key)
        var out = ""
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "_" || c == "-", i > 0, chars[i - 1].isLetter || chars[i - 1].isNumber,
               i + 1 < chars.count, chars[i + 1].isLetter {
                out += chars[i + 1].uppercased()
                i += 2
            } else {
                out.append(c)
                i += 1
            }
        }
        return out
    }

    /// `imageSize` -> `image_size` (with `separator` "-": `image-size`). A run of capitals is one word:
    /// `chosenLR` -> `chosen_lr`, `noIJ` -> `no_ij`, `dLRScale` -> `d_lr_scale`.
    public static func snakeCase(_ key: String, separator: Character = "_") -> String {
        let chars = Array(key)
        var out = ""
        for (i, c) in chars.enumerated() {
            if c.isUppercase && i > 0 {
                let prev = chars[i - 1]
                let nextIsLower = i + 1 < chars.count && chars[i + 1].isLowercase
                if prev.isLowercase || prev.isNumber || (prev.isUppercase && nextIsLower) { out.append(separator) }
            }
            out.append(contentsOf: c.lowercased())
        }
        return out
    }

    /// The spellings a camelCase `key` may be recorded under, newest first: itself, snake_case, kebab-case.
    public static func spellings(_ key: String) -> [String] {
        var all = [key]
        for old in [snakeCase(key), snakeCase(key, separator: "-")] where !all.contains(old) { all.append(old) }
        return all
    }

    /// The value recorded under the camelCase `key`, else under an older spelling of it; nil when none.
    public static func value(_ key: String, in settings: [String: JSONValue]) -> JSONValue? {
        for k in spellings(key) { if let v = settings[k] { return v } }
        return nil
    }

    /// `value(key, in:)` as a number (JSON integer or real); nil when absent or not a number.
    public static func number(_ key: String, in settings: [String: JSONValue]) -> Double? {
        switch value(key, in: settings) {
        case .double(let d)?: d
        case .int(let i)?: Double(i)
        default: nil
        }
    }

    /// `value(key, in:)` as an integer (a JSON integer, or a real with no fraction); nil otherwise.
    public static func integer(_ key: String, in settings: [String: JSONValue]) -> Int? {
        switch value(key, in: settings) {
        case .int(let i)?: Int(exactly: i)
        case .double(let d)? where d == d.rounded() && abs(d) < 9e15: Int(d)
        default: nil
        }
    }

    /// `value(key, in:)` as a string; nil when absent or not a string.
    public static func string(_ key: String, in settings: [String: JSONValue]) -> String? {
        if case .string(let s)? = value(key, in: settings) { return s }
        return nil
    }

    /// `settings` with every top-level key in camelCase (an old run config or record read by the
    /// current decoder). When a key is recorded under both spellings, the camelCase one wins.
    public static func camelCased(_ settings: [String: JSONValue]) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for (k, v) in settings where camelCase(k) != k { out[camelCase(k)] = v }
        for (k, v) in settings where camelCase(k) == k { out[k] = v }
        return out
    }
}

extension Provenance {
    /// The hyperparameter recorded under the camelCase `key` or an older spelling of it
    /// (`RecordedSettings.value`); nil when none.
    public func recordedSetting(_ key: String) -> JSONValue? {
        RecordedSettings.value(key, in: hyperparameters)
    }
}
