import Foundation
import SluiceFuzzHarnesses
#if SLUICE_FUZZ
import CFuzzDriver
#endif

/// `sluice-fuzz`: the fuzz harnesses as one program.
///
/// Built by `scripts/fuzz.sh` with libFuzzer's coverage and the address sanitizer
/// (`-DSLUICE_FUZZ`), it fuzzes the harness named by `SLUICE_FUZZ_HARNESS` and takes
/// libFuzzer's flags. In a plain build it replays inputs: `sluice-fuzz HARNESS FILE|DIR…`
/// (what a crash report's input does now, without the sanitizers). `--list` names the harnesses.
@main struct SluiceFuzz {
    nonisolated(unsafe) static var harness: FuzzHarness?

    static func main() {
        let args = CommandLine.arguments
        if args.count == 2 && args[1] == "--list" {
            for h in FuzzHarnesses.all { print("\(h.name)\t\(h.about)") }
            return
        }
#if SLUICE_FUZZ
        guard let name = ProcessInfo.processInfo.environment["SLUICE_FUZZ_HARNESS"], let h = FuzzHarnesses.named(name) else {
            fail("set SLUICE_FUZZ_HARNESS to one of: \(FuzzHarnesses.all.map(\.name).joined(separator: ", "))")
        }
        harness = h
        h.prepare()
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            SluiceFuzz.harness!.run(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        })
#else
        guard args.count >= 3, let h = FuzzHarnesses.named(args[1]) else {
            fail("usage: sluice-fuzz HARNESS FILE|DIR… (harnesses: \(FuzzHarnesses.all.map(\.name).joined(separator: ", "))); sluice-fuzz --list")
        }
        var count = 0
        for path in args[2...] {
            for file in files(path) {
                guard let data = FileManager.default.contents(atPath: file) else { fail("cannot read \(file)") }
                data.withUnsafeBytes { h.run($0) }
                count += 1
            }
        }
        print("\(h.name): \(count) inputs, no finding")
#endif
    }

    static func files(_ path: String) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { fail("no such file or folder: \(path)") }
        guard isDirectory.boolValue else { return [path] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.sorted().map { "\(path)/\($0)" }.filter { !$0.hasSuffix("/.gitkeep") }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("sluice-fuzz: \(message)\n".utf8))
        exit(2)
    }
}
