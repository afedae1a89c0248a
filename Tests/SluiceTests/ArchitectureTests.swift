import Foundation
import Testing

/// The shape of the code, as README's Architecture section describes it: modules in layers
/// that import only downwards, no file too long to read, no module holding most of the code.
@Suite struct ArchitectureTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources").path

    /// Each line a layer, top first: a module may import modules of lower layers only.
    static let layers: [[String]] = [
        ["sluice"],
        ["SluiceServer"],
        ["SluiceAgent"],
        ["SluiceSources", "SluiceTransform"],
        ["SluiceConfig"],
        ["SluiceIngest"],
        ["SluiceLake", "SluiceManifest", "SluiceSFTP", "SluiceParquet"],
        ["SluiceS3"],
        ["SluiceFormats"],
        ["SluiceSupport"],
    ]

    /// Every Swift file of a module: its name and its lines.
    static func files(of module: String) throws -> [(name: String, lines: [Substring])] {
        let dir = "\(sources)/\(module)"
        return try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".swift") }.sorted().map { name in
            (name, try String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false))
        }
    }

    @Test func modulesImportOnlyLowerLayers() throws {
        let layerOf = Dictionary(uniqueKeysWithValues: Self.layers.enumerated().flatMap { i, ms in ms.map { ($0, i) } })
        for (module, layer) in layerOf {
            for file in try Self.files(of: module) {
                for line in file.lines where line.hasPrefix("import Sluice") || line.hasPrefix("@testable import Sluice") {
                    let imported = String(line.split(separator: " ").last!)
                    let theirs = try #require(layerOf[imported], "\(module)/\(file.name) imports \(imported), which is in no layer")
                    #expect(theirs > layer, "\(module)/\(file.name) imports \(imported), which is not below it")
                }
            }
        }
    }

    @Test func everySourceModuleIsInALayerAndNamesItsJob() throws {
        let modules = try FileManager.default.contentsOfDirectory(atPath: Self.sources).filter { !$0.hasPrefix("C") && !$0.hasPrefix(".") }
        #expect(Set(modules) == Set(Self.layers.joined()))
        for module in modules where module != "sluice" {
            let own = try Self.files(of: module).first { $0.name == "\(module).swift" }
            #expect(own?.lines.first?.hasPrefix("// \(module): ") == true, "\(module)/\(module).swift says what the module is for")
        }
    }

    @Test func filesStayReadableAndNoModuleHoldsMostOfTheCode() throws {
        var total = 0
        var perModule: [String: Int] = [:]
        var names: [String: String] = [:]
        for module in Self.layers.joined() {
            for file in try Self.files(of: module) {
                #expect(file.lines.count <= 750, "\(module)/\(file.name) has \(file.lines.count) lines: split it by responsibility")
                if let other = names[file.name] { Issue.record("\(file.name) is in both \(other) and \(module)") }
                names[file.name] = module
                perModule[module, default: 0] += file.lines.count
                total += file.lines.count
            }
        }
        for (module, n) in perModule {
            #expect(n * 4 <= total, "\(module) holds \(n) of \(total) lines, more than a quarter")
        }
    }
}
