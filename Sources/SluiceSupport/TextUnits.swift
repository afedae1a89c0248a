import Foundation

public enum ByteSizeText {
    /// Parses `1048576`, `512MiB`, `20GiB`, `10GB` (binary and decimal units) into bytes.
    public static func parse(_ s: String) -> Int64? {
        let trimmed = s.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        guard !digits.isEmpty, digits.count <= 15, let n = Int64(digits) else { return nil }
        let scale: Int64
        switch unit.lowercased() {
        case "", "b": scale = 1
        case "kib", "k": scale = 1 << 10
        case "mib", "m": scale = 1 << 20
        case "gib", "g": scale = 1 << 30
        case "tib", "t": scale = 1 << 40
        case "kb": scale = 1_000
        case "mb": scale = 1_000_000
        case "gb": scale = 1_000_000_000
        case "tb": scale = 1_000_000_000_000
        default: return nil
        }
        let (product, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow ? nil : product
    }

    /// `20 GiB`, `512 MiB`, `900 B`: the largest binary unit that divides evenly.
    public static func format(_ n: Int64) -> String {
        for (shift, name) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] where n >= (1 << shift) && n % (1 << shift) == 0 {
            return "\(n >> shift) \(name)"
        }
        return "\(n) B"
    }
}

public enum DurationText {
    /// A duration in the largest unit that states it whole: "90s", "30m", "2h", "0s".
    public static func format(nanoseconds ns: Int64) -> String {
        for (unit, size) in [("d", Int64(86_400_000_000_000)), ("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000), ("ms", 1_000_000)]
        where ns != 0 && ns % size == 0 {
            return "\(ns / size)\(unit)"
        }
        return ns == 0 ? "0s" : "\(ns / 1_000_000)ms"
    }

    /// Parses `500ms`, `30s`, `5m`, `1h`, `1d` into nanoseconds.
    public static func parseNanoseconds(_ s: String) -> Int64? {
        let digits = s.prefix { $0.isASCII && $0.isNumber }
        let suffix = s.dropFirst(digits.count)
        guard !digits.isEmpty, digits.count <= 9, let n = Int64(digits) else { return nil }
        let unit: Int64
        switch suffix {
        case "ms": unit = 1_000_000
        case "s": unit = 1_000_000_000
        case "m": unit = 60_000_000_000
        case "h": unit = 3_600_000_000_000
        case "d": unit = 86_400_000_000_000
        default: return nil
        }
        return n * unit
    }
}

extension Duration {
    package var nanoseconds: Int64 {
        let c = components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }
}
