import Foundation
import SluiceLake
import SluiceManifest
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats
#if canImport(Glibc)
import Glibc
#endif

/// Changes to the lake's layout that move files, run once per lake at the first start of a
/// version that needs them, and recorded in the manifest's `lake_migration` table when done.
///
/// Each step keeps the manifest pointing at a whole file at every instant: the file is first
/// linked at its new path (and that folder synced), then the manifest rows are pointed there,
/// and only then is the old name removed. A crash anywhere is picked up at the next start.
package enum LakeMigration {
    package static let rejectsOutOfDatasets = "rejects-out-of-datasets"

    package static func run(lake: Lake, manifest: Manifest) throws {
        guard try !manifest.lakeMigrationDone(rejectsOutOfDatasets) else { return }
        if lake.bucket != nil, try !manifest.rejectsInsideDatasets().isEmpty {
            throw AgentError(.runtime, "the manifest lists rejects in the lake's old layout: start this version once with the lake on disk (before moving it to the bucket)")
        }
        try moveRejectsOutOfDatasets(lake: lake, manifest: manifest)
        try manifest.markLakeMigrationDone(rejectsOutOfDatasets)
    }

    /// `processed/<client>/<dataset>/…/<name>.rejects.jsonl` → `processed/<client>/_rejects/<dataset>/…`,
    /// where readers of the dataset's folder do not trip over it.
    package static func moveRejectsOutOfDatasets(lake: Lake, manifest: Manifest) throws {
        for old in try manifest.rejectsInsideDatasets() {
            let parts = old.split(separator: "/").map(String.init)
            guard parts.count >= 4, parts[0] == "processed", old.hasSuffix(".rejects.jsonl") else { continue }
            let new = (parts[0..<2] + [Transformer.rejectsFolder] + parts[2...]).joined(separator: "/")
            let newFolder = String(new[..<new.lastIndex(of: "/")!])
            let oldFolder = String(old[..<old.lastIndex(of: "/")!])
            let (from, to) = ("\(lake.root)/\(old)", "\(lake.root)/\(new)")
            if access(from, F_OK) == 0 {
                try lake.prepare(folders: [newFolder])
                if link(from, to) != 0 {
                    let err = errno
                    // Linked before a crash: the same file under both names.
                    guard err == EEXIST, sameFile(from, to) else { throw SystemCallError(call: "link", errno: err, path: to) }
                }
                try lake.syncDirectories([newFolder])
            } else if access(to, F_OK) != 0 {
                continue  // under neither name: nothing to move, the row stays as it is
            }
            try manifest.moveRejects(from: old, to: new)
            if unlink(from) == 0 { try lake.syncDirectories([oldFolder]) }
        }
    }

    private static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}
