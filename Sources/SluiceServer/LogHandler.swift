import Foundation
import Logging
import SluiceLake
import SluiceSupport
import SluiceAgent
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform

/// Log lines on stderr. Under systemd (`$JOURNAL_STREAM` set) each line starts with the
/// syslog priority `<3>`…`<7>` so journald keeps the level, and carries no timestamp (the
/// journal adds its own); otherwise lines start with an ISO 8601 timestamp.
///
/// Fields are logfmt: `key=value`, the value in double quotes (with `\"` and `\\`) when it is
/// empty or holds a space, `"` or `=`. Control characters and line separators in the message
/// and in every value are written as `%HH` (`PrintableText`), so client-controlled text (a
/// file name, an upload's path) can never start a line of its own or a journald priority.
public struct SluiceLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let journald: Bool

    public init(label: String, level: Logger.Level, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.label = label
        logLevel = level
        journald = !(environment["JOURNAL_STREAM"] ?? "").isEmpty
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// syslog priorities: err 3, warning 4, notice 5, info 6, debug 7.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .critical, .error: 3
        case .warning: 4
        case .notice: 5
        case .info: 6
        case .debug, .trace: 7
        }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let fields = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { Self.field($0.key, "\($0.value)") }.joined(separator: " ")
        let message = PrintableText.escape("\(event.message)")
        let line: String
        if journald {
            line = "<\(Self.priority(event.level))>\(event.level) \(message)\(fields)\n"
        } else {
            let now = Date()
            let stamp = ISO8601DateFormatter.string(from: now, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withInternetDateTime])
            line = "\(stamp) \(event.level) \(label): \(message)\(fields)\n"
        }
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// One logfmt field: `key=value`, quoted when the value needs it, control characters as `%HH`.
    static func field(_ key: String, _ value: String) -> String {
        let safe = PrintableText.escape(value)
        let quote = safe.isEmpty || safe.contains { $0 == " " || $0 == "\"" || $0 == "=" }
        guard quote else { return "\(PrintableText.escape(key))=\(safe)" }
        var q = "\""
        for c in safe {
            if c == "\"" || c == "\\" { q.append("\\") }
            q.append(c)
        }
        return "\(PrintableText.escape(key))=\(q)\""
    }
}
