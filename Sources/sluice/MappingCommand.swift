import ArgumentParser
import Foundation
import SluiceSupport
import SluiceTransform

struct Mapping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Help write mapping files.",
        subcommands: [Draft.self])

    struct Draft: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read a sample file and print a mapping file for it.",
            discussion: "Reads FILE (csv, json, jsonl, xlsx or fixed-width text; compressed with gzip, bzip2, xz or zstd or not) and prints to stdout a complete mapping file that check-config accepts: the format, delimiter, quote, encoding, header row and preamble lines to skip, decimal and thousands separators and null values, and per column a field with a snake_case name, its source, the narrowest type that reads every sampled value, a date or timestamp format, and required where no sampled value is empty. Where the sample cannot decide (an empty column; dates that read both day-first and month-first) it picks the safer type and says so in a comment on that line. Timestamps get timezone = \"UTC\" with a comment: set the client's zone. Only the first 4 MiB (or 5,000 records) are read. Nothing is written and no agent.conf is needed. Exit codes: 0 printed; 1 the file cannot be read as its format; 2 usage error (no such file, an encrypted file or an archive, a bad --format, --client or --dataset).")

        @Argument(help: "The sample file.") var file: String
        @Option(help: "The client the mapping is for (named in the draft's first lines).") var client: String?
        @Option(help: "The dataset's name, [a-z0-9_]+ (default: from the file's name).") var dataset: String?
        @Option(help: "csv, json, jsonl, xlsx or fixed (default: from the name, then the content).") var format: String?

        func run() throws {
            do {
                let text = try MappingDraft.draft(MappingDraft.Request(path: file, client: client, dataset: dataset, format: format))
                FileHandle.standardOutput.write(Data(text.utf8))
            } catch {
                FileHandle.standardError.write(Data("sluice: error: \(PrintableText.escape(error.description))\n".utf8))
                throw ExitCode(error.usage ? 2 : 1)
            }
        }
    }
}
