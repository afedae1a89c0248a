import SluiceSupport
import SluiceLake
import SluiceManifest
// Settings of a source that the ingest road itself acts on.

/// What to do with a client's file once its version is committed.
public enum AfterIngest: Sendable, Equatable, CustomStringConvertible {
    case keep
    case delete
    /// Move into this folder, at the same relative place: relative to the source root
    /// (`done/2026`), or absolute (`/srv/archive/acme`: on the same server or file system; for
    /// an s3 source, a key prefix from the bucket's root). Never with a trailing `/`.
    case move(String)

    public var description: String {
        switch self {
        case .keep: "keep"
        case .delete: "delete"
        case .move(let f): "move:\(f)"
        }
    }
}

/// How a batch of staged lake files is made durable before it is published.
public enum SyncMethod: String, Sendable {
    /// One `syncfs` of the lake's file system per batch. Fastest; also flushes other writers'
    /// dirty data on that file system, so best when the lake has its own volume.
    case syncfs
    /// One `fsync` per file (writeback started as each file is written).
    case fsync
}
