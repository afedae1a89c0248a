import Foundation
import SluiceSupport

/// `[[clients.<id>.expect]]`: a delivery the team expects, by a schedule.
public struct Expectation: Sendable, Equatable {
    /// The glob, as written: matched against the delivered path, and against it without a
    /// compression or OpenPGP suffix (as mappings match).
    public var match: String
    public var glob: Glob
    public var schedule: CronSchedule
    public var timezone: String
    /// How long after each deadline a delivery still counts as on time.
    public var graceNanoseconds: Int64
    /// Only deliveries through this source count (nil: any source of the client).
    public var source: String?

    package init(match: String, glob: Glob, schedule: CronSchedule, timezone: String, graceNanoseconds: Int64, source: String?) {
        self.match = match
        self.glob = glob
        self.schedule = schedule
        self.timezone = timezone
        self.graceNanoseconds = graceNanoseconds
        self.source = source
    }

    /// Names the expectation in alert ids, the status and the console: `source:match` or `match`.
    public var key: String { (source.map { "\($0):" } ?? "") + match }
}

extension TableReader {
    /// The client's `[[clients.<id>.expect]]` tables.
    package func expectations(_ t: TOMLTable, path: String, sources: [String]) throws(ConfigError) -> [Expectation] {
        guard let value = t["expect"] else { return [] }
        guard let entries = value.array else {
            throw fail("\(path).expect", "expected [[\(path).expect]] tables (an array of tables), found \(typeName(value))")
        }
        var out: [Expectation] = []
        for (i, entry) in entries.enumerated() {
            let p = "\(path).expect[\(i)]"
            guard let e = entry.table else { throw fail(p, "expected a table, found \(typeName(entry))") }
            try checkKeys(e, path: p, allowed: ["match", "schedule", "timezone", "grace", "source"])
            let match = try string(e, "match", p, required: true)!
            let glob: Glob
            do { glob = try Glob(match) } catch { throw fail("\(p).match", "bad glob \"\(match)\": \(error)") }
            let cron = try string(e, "schedule", p, required: true)!
            let schedule: CronSchedule
            do { schedule = try CronSchedule(cron) } catch { throw fail("\(p).schedule", "bad schedule \"\(cron)\": \(error)") }
            let zone = try string(e, "timezone", p, required: false) ?? "UTC"
            guard TimeZone(identifier: zone) != nil else {
                throw fail("\(p).timezone", "unknown time zone \"\(zone)\": expected an IANA name such as \"Europe/Berlin\" or \"UTC\"")
            }
            let grace = try duration(e, "grace", p) ?? 0
            guard grace >= 0 else { throw fail("\(p).grace", "must not be negative") }
            let source = try string(e, "source", p, required: false)
            if let source, !sources.contains(source) {
                throw fail("\(p).source", "client has no source '\(source)' (its sources: \(sources.joined(separator: ", ")))")
            }
            let x = Expectation(match: match, glob: glob, schedule: schedule, timezone: zone, graceNanoseconds: grace, source: source)
            guard !out.contains(where: { $0.key == x.key }) else {
                throw fail(p, "two expectations of the client have the same match\(source == nil ? "" : " and source"): merge them (a schedule may list several times)")
            }
            out.append(x)
        }
        return out
    }
}
