import CSluiceLinux
import Crypto
import Foundation
import SluiceLake
import SluiceManifest
import SluiceParquet
import SluiceS3
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceFormats
#if canImport(Glibc)
import Glibc
#endif

/// A stored version to transform.
public struct TransformInput: Sendable {
    public var client: String
    public var source: String
    public var path: RelativePath
    public var version: Int
    public var sha256: String
    /// Relative to the lake root.
    public var lakePath: String
    /// Microseconds since the epoch (UTC) of the ingest.
    public var ingestedAtMicros: Int64
    /// Where to read the bytes instead of `lakePath` (an early transform reads the staged copy
    /// through its descriptor, as `/proc/self/fd/N`).
    public var readPath: String?
    /// Called just before the outputs are published; throwing abandons them (an early
    /// transform waits here for its version's commit).
    public var beforePublish: (@Sendable () throws -> Void)?
    /// Set when this is one member of an archive version: its path and its bytes.
    public var member: TransformMember?
    /// The decrypted bytes of this version, read to their end (where the signature is
    /// checked) before any output is published.
    package var drain: Drain?
    /// Set for the members of an archive: their outputs are published together at its end.
    package var publishBatch: PublishBatch?
    /// The dataset's schema-change policies, applied to the observed schema before publishing.
    package var schemaCheck: (@Sendable (ObservedSchema?) throws -> Void)?

    /// What messages call this unit: the path, and the member inside it.
    package var unitName: String {
        guard let member else { return path.display }
        return "\(path.display), member \(member.display)"
    }

    public init(client: String, source: String, path: RelativePath, version: Int, sha256: String, lakePath: String, ingestedAtMicros: Int64,
                readPath: String? = nil, beforePublish: (@Sendable () throws -> Void)? = nil) {
        self.client = client
        self.source = source
        self.path = path
        self.version = version
        self.sha256 = sha256
        self.lakePath = lakePath
        self.ingestedAtMicros = ingestedAtMicros
        self.readPath = readPath
        self.beforePublish = beforePublish
    }

    /// The input of a stored version as the manifest lists it.
    public init(client: String, candidate c: Manifest.TransformCandidate) {
        self.init(client: client, source: c.source, path: RelativePath(bytes: c.pathBytes), version: c.version, sha256: c.sha256,
                  lakePath: c.lakePath, ingestedAtMicros: Self.micros(c.ingestedAt))
    }

    /// Microseconds since the epoch of a manifest timestamp.
    public static func micros(_ timestamp: String) -> Int64 {
        (try? Values.timestamp(timestamp, format: nil, zone: TimeZone(identifier: "UTC")!)) ?? 0
    }
}

/// One member of an archive being transformed: its path inside the archive (nested archives
/// joined by `/`) and a source of its bytes.
public final class TransformMember: @unchecked Sendable {  // reason: made and read by the one thread that walks the archive
    public let path: [UInt8]
    public let display: String
    package let read: ByteSource

    /// The size the archive declares for it, when it does.
    public let size: Int64?

    package init(path: [UInt8], size: Int64? = nil, read: @escaping ByteSource) {
        self.path = path
        self.size = size
        display = ArchiveMember.display(path)
        self.read = read
    }
}

/// A source to read to its end before publishing (an OpenPGP message's signature is known
/// only there).
package final class Drain: @unchecked Sendable {  // reason: used by one thread at a time: the transform's (a JSON Lines reader thread reads the source only until it has ended)
    package var source: ByteSource?

    /// Reads what is left of the source.
    package func finish() throws {
        guard let source else { return }
        self.source = nil
        try pump(source) { _ in }
    }
}

public struct TransformResult: Sendable, Equatable {
    public typealias Status = TransformStatus
    public var status: Status
    /// The archive member this result is of (escaped for display); nil for a whole version.
    public var member: String?
    /// For an archive version: each member's result (directories and links are not members).
    public var members: [TransformResult] = []
    public var dataset: String?
    public var rowsWritten: Int64 = 0
    public var rowsRejected: Int64 = 0
    /// Relative to the lake root.
    public var outputPath: String?
    public var rejectsPath: String?
    public var error: String?
    /// The schema the unit was seen to have (nil where it was not read far enough).
    public var observedSchema: ObservedSchema?
    /// What changed against the previous delivery of the dataset (nil: nothing, or none before).
    public var drift: SchemaDrift?
    /// It failed for a reason outside the file that passes: a file system it writes to (the
    /// lake's `processed/`, the spool) is full, or the lake's bucket did not answer. Such a
    /// result is not recorded: the version stays pending and is transformed again later.
    public var retryLater = false

    package init(status: Status, dataset: String? = nil, rowsWritten: Int64 = 0, rowsRejected: Int64 = 0, outputPath: String? = nil, rejectsPath: String? = nil, error: String? = nil) {
        self.status = status
        self.dataset = dataset
        self.rowsWritten = rowsWritten
        self.rowsRejected = rowsRejected
        self.outputPath = outputPath
        self.rejectsPath = rejectsPath
        self.error = error
    }
}

/// Turns one stored version into typed Parquet (or JSONL) under `processed/`, with lineage
/// columns, and its rejected rows into a `.rejects.jsonl` under `processed/<client>/_rejects/`.
public struct Transformer: Sendable {
    /// The lake, whose staging journal covers the temp files of outputs being written.
    public let lake: Lake
    public let mapping: ClientMapping
    /// How far a compressed delivery may unpack (`max_unpacked_bytes`, `max_unpack_ratio`).
    public let limits: UnpackLimits
    package var lakeRoot: String { lake.root }

    /// Where plaintext that a reader must seek in (an xlsx inside a zip, an inner zip) is
    /// spooled to unnamed files: the agent's `state_dir/spool`; nil: the lake's `processed/`.
    public let spoolDirectory: String?
    /// The client's OpenPGP keyring (`[clients.<id>.pgp]`), or why there is none.
    package let keys: StoredBytes.KeySource
    /// The observed schema of a dataset's previous delivery (for the schema-change policies).
    package var previousSchema: (@Sendable (String) -> ObservedSchema?)?

    package init(lake: Lake, mapping: ClientMapping, limits: UnpackLimits = UnpackLimits(), spoolDirectory: String? = nil, keys: StoredBytes.KeySource = .none) {
        self.lake = lake
        self.mapping = mapping
        self.limits = limits
        self.spoolDirectory = spoolDirectory
        self.keys = keys
    }

    public init(lake: Lake, mapping: ClientMapping, limits: UnpackLimits = UnpackLimits(), spoolDirectory: String? = nil) {
        self.init(lake: lake, mapping: mapping, limits: limits, spoolDirectory: spoolDirectory, keys: .none)
    }

    /// An unnamed file, readable by this process only, gone when it is closed.
    package func makeSpool() throws -> SpooledEntry {
        if let spoolDirectory { return try SpooledEntry(directory: spoolDirectory) }
        return try SpooledEntry(lake: lake, folder: "processed")
    }

    /// The dataset whose `match` (and `sources`) take this version (or this member of an
    /// archive), if any. With `unpack = "auto"` the globs also apply to the name without its
    /// compression suffix, so that `orders_*.csv` takes `orders_2026-10.csv.gz`; a member is
    /// matched by its path inside the archive, by datasets that unpack only.
    public func dataset(for input: TransformInput) -> DatasetMapping? {
        let name = input.member?.path ?? input.path.bytes
        let bare = StoredBytes.bareName(name)
        return mapping.datasets.first { d in
            guard d.sources == nil || d.sources!.contains(input.source) else { return false }
            guard input.member == nil || d.unpack == .auto else { return false }
            return d.match.contains { glob in
                glob.matches(name) || (d.unpack == .auto && bare.map { glob.matches($0) } == true)
            }
        }
    }

    /// The version's bytes as the dataset's format reads them: unpacked when it is compressed
    /// (by its content; a suffix that names another compression is an error) and the dataset
    /// unpacks, else as stored; and whether they are unpacked. The source keeps the file open.
    package func inputBytes(_ input: TransformInput, _ d: DatasetMapping) throws -> (read: ByteSource, unpacked: Bool) {
        let name = input.unitName, client = input.client
        func failure(_ e: UnpackError) -> TransformError {
            TransformError("\(name): \(e.description); the raw version is kept — after a fix, run `sluice transform \(client) --failed`")
        }
        var stored: ByteSource, head: [UInt8]
        var decrypted = false
        if let member = input.member {
            let peek = PeekableSource(member.read)
            stored = peek.read
            head = try peek.head(Compression.magicLength)
        } else {
            let file = try LakeFile(lakeRoot: lakeRoot, input: input)
            let fileHead = try file.head(OpenPGP.magicLength)
            (stored, decrypted) = try StoredBytes.decrypted(name: input.path.bytes, shown: name, head: fileHead, read: file.read, keys: keys,
                                                            client: client, decrypt: d.unpack == .auto)
            if decrypted {
                let peek = PeekableSource(stored)
                stored = peek.read
                head = try peek.head(Compression.magicLength)
                // The signature is checked at the end of the message: what is left of it is read
                // before anything is published, whether or not the format (or a decompressor,
                // which stops at its own end) read that far.
                input.drain?.source = stored
            } else {
                head = Array(fileHead.prefix(Compression.magicLength))
            }
        }
        let plainName = input.member?.path ?? (OpenPGP.strippingSuffix(input.path.bytes) ?? input.path.bytes)
        let compression = d.unpack == .auto ? try Self.compression(head: head, name: plainName, shown: name) : nil
        let bytes: ByteSource
        do throws(UnpackError) {
            bytes = try Compression.unpacking(compression, limits: limits, source: stored)
        } catch {
            throw failure(error)
        }
        guard compression != nil || input.member != nil || decrypted else { return (bytes, false) }
        let unpacked: ByteSource = { (buffer: UnsafeMutableRawBufferPointer) throws -> Int in
            do {
                return try bytes(buffer)
            } catch let e as UnpackError {
                throw failure(e)
            } catch let e as OpenPGPError {
                throw TransformError("\(e.description); the raw version is kept — after a fix, run `sluice transform \(client) --failed`")
            }
        }
        return (unpacked, true)
    }

    /// The compression of a stored version (or member), from its first bytes `head`; nil when
    /// it has none. A name whose suffix promises a compression the content does not have is
    /// an error.
    package static func compression(head: [UInt8], name: [UInt8], shown: String) throws -> Compression? {
        let found = Compression.sniff(head)
        if let named = Compression.named(by: name), named != found {
            let hex = head.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw TransformError("\(shown) ends in \(named.suffix) but is not \(named.rawValue) data (it starts with \(hex)"
                + "\(found.map { ", which is \($0.rawValue)" } ?? "")); the raw version is kept — ask the client to resend it, or rename it in a new delivery")
        }
        return found
    }

    /// `processed/<client>/<dataset>/ingest_date=YYYY-MM-DD/<source>__<path>.v<N>.parquet`.
    public static func outputPath(_ input: TransformInput, dataset: String, extension ext: String) -> String {
        let day = input.ingestedAtMicros / 86_400_000_000
        let date = Values.civil(day)
        var name = ""
        for b in Array(input.source.utf8) + [UInt8(ascii: "/")] + input.path.bytes { name += nameByte(b) }
        var file = "\(name).v\(input.version)"
        if let member = input.member {
            // `~` is escaped in names, so this part cannot be confused with a path's own.
            var escaped = ""
            for b in member.path { escaped += nameByte(b) }
            // A file name has at most 255 bytes: a long member path keeps its start and a hash.
            if escaped.utf8.count > 160 {
                let digest = SHA256.hash(data: member.path).prefix(8).map { String(format: "%02x", $0) }.joined()
                escaped = String(escaped.utf8.prefix(120))! + "~" + digest
            }
            file += "~" + escaped
        }
        return "processed/\(input.client)/\(dataset)/ingest_date=\(date)/\(file).\(ext)"
    }

    /// One byte of a path as an output's file name has it: `/` as `__`, letters, digits and
    /// `.-_` as they are, every other byte as `%HH`.
    private static func nameByte(_ b: UInt8) -> String {
        switch b {
        case UInt8(ascii: "/"): "__"
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"): String(UnicodeScalar(b))
        default: String(format: "%%%02X", b)
        }
    }

    /// Where the rejected rows of an output go: `processed/<client>/_rejects/<dataset>/…`, the
    /// output's own path below the dataset with `.rejects.jsonl` for its extension. Outside the
    /// dataset's folder, so that a reader of that folder (pyarrow.dataset, Spark, DuckDB's
    /// `**/*.parquet`) sees Parquet only; the `_` also makes readers of the client's folder
    /// skip it.
    public static func rejectsPath(ofOutput outRel: String) -> String {
        var parts = outRel.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        precondition(parts.count >= 4 && parts[0] == "processed", "not an output path: \(outRel)")
        parts.insert(rejectsFolder, at: 2)
        let last = parts.removeLast()
        let stem = last.hasSuffix(".parquet") ? last.dropLast(8) : last.hasSuffix(".jsonl") ? last.dropLast(6) : last[...]
        parts.append(stem + ".rejects.jsonl")
        return parts.joined(separator: "/")
    }

    /// The folder of each client below `processed/` that holds the rejects of its datasets.
    public static let rejectsFolder = "_rejects"

    public func run(_ input: TransformInput, options: ParquetOptions = ParquetOptions()) -> TransformResult {
        guard lake.bucket != nil, input.member == nil, input.readPath == nil else { return runLocal(input, options: options) }
        // On an S3 lake the version is read from a checked local copy, removed afterwards.
        let archive = archiveKind(of: input) != nil
        if !archive && dataset(for: input) == nil && !OpenPGP.named(by: input.path.bytes) { return TransformResult(status: .unmapped) }
        let copy: LocalCopy
        do {
            copy = try lake.localCopy(of: input.lakePath, sha256: input.sha256)
        } catch {
            var failed = TransformResult(status: .failed, error: "\(input.path.display): reading \(input.lakePath) from the lake failed: \(error)")
            failed.retryLater = Self.passes(error)
            if !failed.retryLater { failed.error! += "; after a fix, run `sluice transform \(input.client) --failed`" }
            return failed
        }
        var local = input
        local.readPath = copy.path
        return withExtendedLifetime(copy) { runLocal(local, options: options) }
    }

    private func runLocal(_ input: TransformInput, options: ParquetOptions) -> TransformResult {
        if input.member == nil, let kind = archiveKind(of: input) { return runArchive(input, kind, options: options) }
        if input.member == nil, OpenPGP.named(by: input.path.bytes), let head = try? LakeFile(lakeRoot: lakeRoot, input: input).head(OpenPGP.magicLength),
           StoredBytes.isArmouredNonMessage(head) {
            // A detached signature or a key beside the data (orders.csv.asc): nothing to transform.
            return TransformResult(status: .unmapped)
        }
        guard let dataset = dataset(for: input) else { return TransformResult(status: .unmapped) }
        var result = TransformResult(status: .failed, dataset: dataset.name)
        var input = input
        let previous = previousSchema?(dataset.name)
        if dataset.hasSchemaPolicies {
            let client = input.client
            input.schemaCheck = { try dataset.enforce($0, drift: SchemaDrift.between(previous, $0), client: client) }
        }

        if input.member == nil {
            let drain = Drain()
            let publish = input.beforePublish
            input.drain = drain
            input.beforePublish = {
                try drain.finish()
                try publish?()
            }
        }
        do {
            try dataset.format.transform(input, dataset, with: self, parquet: options, result: &result)
        } catch let e as TransformError {
            result.error = e.message
        } catch let e as OpenPGPError {
            result.error = "\(e.description); the raw version is kept — after a fix, run `sluice transform \(input.client) --failed`"
        } catch let e as SchemaHold {
            result.status = .held
            result.error = e.reason
        } catch {
            result.error = "\(error)"
            result.retryLater = Self.passes(error)
        }
        // Recorded with the unit, whatever its outcome: what changed since the delivery before.
        result.drift = SchemaDrift.between(previous, result.observedSchema)
        return result
    }

    /// Whether `error` says nothing about the file, and passes: a full file system, or a
    /// bucket that did not answer (`TransformResult.retryLater`).
    package static func passes(_ error: any Error) -> Bool {
        if let e = error as? SystemCallError { return e.isOutOfSpace }
        if let e = error as? S3Error { return e.retryable }
        return false
    }

    package struct TransformError: Error, CustomStringConvertible {
        package let message: String
        init(_ m: String) { message = m }
        package var description: String { message }
    }

    package static let lineage: [ParquetField] = [
        ParquetField(name: "_client", type: .string, nullable: false),
        ParquetField(name: "_source", type: .string, nullable: false),
        ParquetField(name: "_source_path", type: .string, nullable: false),
        ParquetField(name: "_source_version", type: .int64, nullable: false),
        ParquetField(name: "_source_sha256", type: .string, nullable: false),
        ParquetField(name: "_row_number", type: .int64, nullable: false),
        ParquetField(name: "_ingested_at", type: .timestampMicros, nullable: false),
        ParquetField(name: "_source_member", type: .string, nullable: true),
    ]

    package static func parquetType(_ t: FieldType) -> ParquetColumnType {
        switch t {
        case .string: .string
        case .int64: .int64
        case .float64: .float64
        case .bool: .bool
        case .date: .date
        case .timestamp: .timestampMicros
        case .decimal(let p, let s): .decimal(precision: p, scale: s)
        }
    }

    /// One field's typed value from its raw text (nil = absent).
    package static func value(_ raw: String?, _ f: FieldMapping, _ d: DatasetMapping) throws(ValueError) -> ParquetValue {
        var text = raw
        if f.trim { text = text?.trimmingCharacters(in: .whitespaces) }
        if let t = text, d.nullValues.contains(t) { text = nil }
        if let t = text, let mapped = f.map[t] { text = mapped }
        guard let present = text ?? f.defaultValue else {
            if f.required { throw ValueError("required field \(f.name) is empty") }
            return .null
        }
        switch f.type {
        case .string: return .string(Array(present.utf8))
        case .int64: return .int64(try Values.int64(present, decimal: d.decimalSeparator, thousands: d.thousandsSeparator))
        case .float64: return .float64(try Values.float64(present, decimal: d.decimalSeparator, thousands: d.thousandsSeparator))
        case .bool: return .bool(try Values.bool(present, trueValues: f.trueValues, falseValues: f.falseValues))
        case .date: return .date(try Values.date(present, format: f.format))
        case .timestamp: return .timestamp(try Values.timestamp(present, format: f.format, zone: f.timezone))
        case .decimal(let p, let s):
            return .decimal(try Values.decimal(present, precision: p, scale: s, decimal: d.decimalSeparator, thousands: d.thousandsSeparator))
        }
    }

    /// Each field's 0-based column: its `source` header name, or its 1-based column number.
    /// A required field missing from the header fails the file, naming it; without a header,
    /// every source must be a column number.
    package static func columns(for d: DatasetMapping, header: [String]?) throws -> [Int] {
        guard let header else {
            return try d.fields.map { f in
                guard let n = Int(f.source ?? ""), n >= 1 else { throw TransformError("field \(f.name): without a header, source must be a 1-based column number") }
                return n - 1
            }
        }
        var columnOf: [Int] = []
        var missing: [String] = []
        for f in d.fields {
            let source = f.source ?? ""
            // The source, else the first alias the header has (a header name only once).
            if let name = f.names.first(where: { header.contains($0) }) {
                let i = header.firstIndex(of: name)!
                if let j = header[(i + 1)...].firstIndex(of: name) {
                    throw TransformError("field \(f.name): the header has \"\(name)\" twice (columns \(i + 1) and \(j + 1)); map it by column number, source = \"\(i + 1)\" or \"\(j + 1)\"")
                }
                columnOf.append(i)
            } else if let n = Int(source), n >= 1 {
                columnOf.append(n - 1)
            } else {
                if f.required { missing.append(f.names.map { "\"\($0)\"" }.joined(separator: " or ")) }
                columnOf.append(-1)
            }
        }
        if !missing.isEmpty {
            throw TransformError("missing required column\(missing.count > 1 ? "s" : "") \(missing.joined(separator: ", ")) (the header has \(header.joined(separator: ", ")))")
        }
        return columnOf
    }

    package static func jsonLine(_ values: [ParquetValue], fields: [ParquetField], into out: AtomicFile) throws {
        var object: [String: Any] = [:]
        for (f, v) in zip(fields, values) {
            switch v {
            case .null: object[f.name] = NSNull()
            case .string(let b): object[f.name] = String(decoding: b, as: UTF8.self)
            case .int64(let i): object[f.name] = i
            case .float64(let d): object[f.name] = d
            case .bool(let b): object[f.name] = b
            case .date(let d): object[f.name] = Values.civil(Int64(d))
            case .timestamp(let t): object[f.name] = t
            case .decimal(let d):
                if case .decimal(_, let scale) = f.type {
                    let digits = String(d.magnitude)
                    let padded = String(repeating: "0", count: Swift.max(0, scale + 1 - digits.count)) + digits
                    let cut = padded.index(padded.endIndex, offsetBy: -scale)
                    object[f.name] = (d < 0 ? "-" : "") + padded[..<cut] + (scale > 0 ? "." + padded[cut...] : "")
                }
            }
        }
        var data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        data.append(0x0A)
        try data.withUnsafeBytes { try out.write($0) }
    }
}

/// Where a transform's rows go: the Parquet (or JSONL) output and the rejects file, both
/// published only by `finish`, and only if the reject ratio allows.
package final class OutputSink {
    package let dataset: DatasetMapping
    package let fields: [ParquetField]
    package let outRel: String
    package let rejectsRel: String
    private let out: AtomicFile
    /// Made on the first rejected row: most outputs have none.
    private var rejects: AtomicFile?
    private let lake: Lake
    /// Where a member of an archive leaves its files to be published with its siblings'.
    private let batch: PublishBatch?
    private let schemaCheck: (@Sendable (ObservedSchema?) throws -> Void)?
    private let writer: ParquetWriter?
    /// The lineage columns that are the same in every row (all but `_row_number`), by column.
    private let constants: [(column: Int, value: ParquetValue)]
    /// The `_row_number` lineage column, the one that is not constant.
    private let rowNumberColumn: Int
    private let jsonOutput: Bool
    /// Encodes batches on a second thread (Parquet output only).
    private let pipeline: EncodePipeline?
    private var rows: Int64 = 0
    private var rejected: Int64 = 0
    private var open = true
    private let beforePublish: (@Sendable () throws -> Void)?
    /// The client, for the hint in a failure's message.
    private let client: String
    /// The archive member the rows come from, which each rejected row names.
    private let member: String?

    package init(lake: Lake, input: TransformInput, dataset d: DatasetMapping, options: ParquetOptions) throws {
        dataset = d
        client = input.client
        member = input.member?.display
        let small = (input.member?.size ?? .max) < 4 << 20
        beforePublish = input.beforePublish
        outRel = Transformer.outputPath(input, dataset: d.name, extension: d.output == .parquet ? "parquet" : "jsonl")
        rejectsRel = Transformer.rejectsPath(ofOutput: outRel)
        self.lake = lake
        batch = input.publishBatch
        schemaCheck = input.schemaCheck
        out = try AtomicFile(lake: lake, relative: outRel)
        fields = d.fields.map { ParquetField(name: $0.name, type: Transformer.parquetType($0.type), nullable: !$0.required) } + Transformer.lineage
        let out = self.out
        let columns = fields.count
        rowNumberColumn = d.fields.count + 5
        jsonOutput = d.output != .parquet
        let n = d.fields.count
        let constants: [(column: Int, value: ParquetValue)] = [
            (n, .string(Array(input.client.utf8))), (n + 1, .string(Array(input.source.utf8))),
            (n + 2, .string(Array(input.path.display.utf8))), (n + 3, .int64(Int64(input.version))),
            (n + 4, .string(Array(input.sha256.utf8))), (n + 6, .timestamp(input.ingestedAtMicros)),
            (n + 7, input.member.map { .string(Array($0.display.utf8)) } ?? .null),
        ]
        self.constants = constants
        let writer: ParquetWriter?
        do {
            var options = options
            options.compression = d.compression
            // A small member of an archive is encoded on this thread: for a few thousand rows
            // two helper threads cost more than they save.
            if small { options.backgroundCompression = false }
            writer = d.output == .parquet ? try ParquetWriter(fields: fields, options: options) { try out.write($0) } : nil
            // Parquet: the writer adds the constant lineage columns to every row itself.
            for c in constants { try writer?.setConstant(c.column, c.value) }
        } catch {
            out.abandon()
            throw error
        }
        self.writer = writer
        // Batches of at most 64 Ki values (4,096 rows of up to 16 columns), so that the
        // pipeline's memory does not grow with the column count.
        let batchRows = Swift.max(64, Swift.min(4096, 65_536 / Swift.max(columns, 1)))
        let pipeline = small ? nil : writer.map { EncodePipeline(writer: $0, columns: columns, batchRows: batchRows) }
        self.pipeline = pipeline
        // Without the pipeline (a small member, or JSONL output), Parquet rows still go to the
        // writer in batches: 512 rows keep a small member's batch under malloc's mmap threshold.
        row = pipeline?.take() ?? ParquetRow(columns: columns, capacity: writer == nil ? 1 : Swift.min(batchRows, 512))
    }

    /// The row being built: a reader clears it, sets the mapped fields' columns (0..<fields)
    /// and calls `acceptRow(line:)`. It is a different batch after each `acceptRow`.
    package private(set) var row: ParquetRow

    /// A good row: the mapped values, then the lineage columns.
    package func accept(_ values: [ParquetValue], line: Int) throws {
        row.clear()
        for (i, v) in values.enumerated() { row.set(i, v) }
        try acceptRow(line: line)
    }

    /// Keeps `row`, whose mapped columns are set, adding the lineage columns.
    package func acceptRow(line: Int) throws {
        let row = self.row
        row.set(rowNumberColumn, int64: Int64(line))
        rows += 1
        if jsonOutput {
            for c in constants { row.set(c.column, c.value) }
            try Transformer.jsonLine(fields.indices.map { row.value($0, type: fields[$0].type) }, fields: fields, into: out)
            row.reset()
        } else {
            row.commit()
            if row.isFull { try flushRows() }
        }
    }

    /// Hands the full batch to the encoder (and takes an empty one to fill).
    private func flushRows() throws {
        guard row.count > 0 else { return }
        if let pipeline {
            try pipeline.submit(row)
            row = pipeline.take()
        } else if let writer {
            try writer.append(row)
            row.reset()
        }
    }

    /// A rejected row whose raw values are already JSON text.
    package func reject(line: Int, valuesJSON: String, reasons: [String: String]) throws {
        rejected += 1
        let reasonsText = try JSONSerialization.data(withJSONObject: reasons, options: [.sortedKeys, .withoutEscapingSlashes])
        var memberJSON = ""
        if let member {
            let quoted = try JSONSerialization.data(withJSONObject: member, options: [.fragmentsAllowed, .withoutEscapingSlashes])
            memberJSON = "\"member\":" + String(decoding: quoted, as: UTF8.self) + ","
        }
        var text = "{" + memberJSON + "\"reasons\":" + String(decoding: reasonsText, as: UTF8.self) + ",\"row\":\(line),\"values\":" + valuesJSON + "}\n"
        let file = try rejects ?? AtomicFile(lake: lake, relative: rejectsRel)
        rejects = file
        try text.withUTF8 { try file.write(UnsafeRawBufferPointer($0)) }
    }

    /// A rejected row whose raw values are Foundation JSON objects (strings, arrays, NSNull).
    package func reject(line: Int, values: Any, reasons: [String: String]) throws {
        let json = try JSONSerialization.data(withJSONObject: values, options: [.sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed])
        try reject(line: line, valuesJSON: String(decoding: json, as: UTF8.self), reasons: reasons)
    }

    package func finish(into result: inout TransformResult) throws {
        try flushRows()
        try pipeline?.finish()
        try writer?.finish()
        result.rowsWritten = rows
        result.rowsRejected = rejected
        let total = rows + rejected
        if total > 0, Double(rejected) / Double(total) > dataset.maxRejectRatio {
            // The output is not published, but the rejected rows are kept: they say what to fix
            // (the console shows the first ones). A re-run replaces them.
            do {
                try beforePublish?()
                if let rejects {
                    if let batch { rejects.publish(in: batch) } else { try rejects.publish() }
                    // It is the batch's (or published) now: abandoning the output leaves it.
                    self.rejects = nil
                    result.rejectsPath = rejectsRel
                }
            } catch {}
            throw Transformer.TransformError("\(rejected) of \(total) rows rejected, more than max_reject_ratio \(dataset.maxRejectRatio); fix the mapping or the file and run `sluice transform \(client) --failed`")
        }
        // The dataset's schema-change policies decide before anything is published.
        try schemaCheck?(result.observedSchema)
        try beforePublish?()
        if let batch {
            out.publish(in: batch)
            rejects?.publish(in: batch)
        } else {
            try out.publish()
            try rejects?.publish()
        }
        result.outputPath = outRel
        if rejects != nil {
            result.rejectsPath = rejectsRel
        } else {
            // An earlier run's rejects of this output go with it.
            try? lake.remove(published: rejectsRel)
        }
        open = false
        result.status = .ok
    }

    package func abandonIfOpen() {
        guard open else { return }
        open = false
        try? pipeline?.finish()
        out.abandon()
        rejects?.abandon()
    }
}
