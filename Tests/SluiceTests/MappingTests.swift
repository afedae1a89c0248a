import Foundation
import SluiceAgent
import SluiceTransform
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceFormats

/// Mapping files: the keys of the issue, and `check-config` refusing bad ones with exit 2.
@Suite struct MappingTests {
    /// The example from the mapping reference, as a client would write it.
    static let orders = """
        [datasets.orders]
        match = ["orders_*.csv", "exports/**/orders*.csv"]
        sources = ["outbox"]
        format = "csv"
        output = "parquet"
        max_reject_ratio = 0.01
        delimiter = ";"
        quote = "\\""
        header = true
        skip_rows = 0
        encoding = "utf-8"
        decimal_separator = ","
        thousands_separator = "."
        null_values = ["", "NULL", "n/a"]
        fields = [
          { name = "order_id", source = "Order No", type = "int64", required = true },
          { name = "ordered_at", source = "Date", type = "timestamp", format = "%d.%m.%Y %H:%M", timezone = "Europe/Berlin" },
          { name = "amount", source = "Total", type = "decimal(12,2)" },
          { name = "active", source = "Active", type = "bool", true_values = ["ja", "Y"], false_values = ["nein", "N"] },
          { name = "status", source = "Status", type = "string", trim = true, map = { A = "active", C = "cancelled" }, default = "unknown" },
        ]

        [datasets.stock]
        match = ["stock/*.txt"]
        format = "fixed"
        skip_prefixes = ["HDR", "TRL"]
        encoding = "latin1"
        fields = [
          { name = "sku", start = 1, width = 8, type = "string" },
          { name = "qty", start = 9, width = 6, type = "int64" },
        ]

        [datasets.events]
        match = ["*.json"]
        format = "json"
        records = "data.items"
        output = "jsonl"
        fields = [{ name = "customer", source = "customer.id", type = "string", required = true }]
        """

    static func dir(mapping: String, client: String = "acme") -> TempDir {
        let dir = TempDir("mapping")
        dir.config(client: "acme")
        dir.write("mappings/\(client).toml", mapping)
        return dir
    }

    @Test func theReferenceExampleParses() throws {
        let dir = Self.dir(mapping: Self.orders)
        let m = try #require(try AgentConfig.load(path: dir.sub("agent.conf")).loadMappings()["acme"])
        #expect(m.datasets.map(\.name) == ["events", "orders", "stock"])
        #expect(m.sha256.count == 64)
        let orders = m.datasets[1]
        #expect(orders.options(CSVOptions.self).delimiter == UInt8(ascii: ";"))
        #expect(orders.decimalSeparator == "," && orders.thousandsSeparator == ".")
        #expect(orders.maxRejectRatio == 0.01)
        #expect(orders.fields.map(\.type) == [.int64, .timestamp, .decimal(precision: 12, scale: 2), .bool, .string])
        #expect(orders.fields[1].timezone.identifier == "Europe/Berlin")
        #expect(orders.fields[4].map == ["A": "active", "C": "cancelled"])
        #expect(orders.fields[4].defaultValue == "unknown")
        #expect(m.datasets[2].fields[1].start == 9 && m.datasets[2].encoding == .latin1)
        #expect(m.datasets[0].options(JSONOptions.self).records == "data.items" && m.datasets[0].output == .jsonl)
        let check = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("mapping acme:"))
    }

    @Test(arguments: [
        ("format = \"csv\"\nsheet = \"Orders\"", "datasets.x.sheet", "for xlsx datasets"),
        ("format = \"csv\"\ncolour = \"red\"", "datasets.x.colour", "unknown key"),
        ("format = \"parquet\"", "datasets.x.format", "expected one of"),
        ("format = \"csv\"\nfields = [{ name = \"a\", source = \"A\", type = \"decimal(40,2)\" }]", "datasets.x.fields[0] (a).type", "p ≤ 38"),
        ("format = \"csv\"\nfields = [{ name = \"a\", source = \"A\", type = \"timestamp\", format = \"%Y-%q\" }]", "datasets.x.fields[0] (a).format", "unsupported directive %q"),
        ("format = \"csv\"\nfields = [{ name = \"a\", source = \"A\", type = \"timestamp\", timezone = \"Mars/Olympus\" }]", "datasets.x.fields[0] (a).timezone", "unknown time zone"),
        ("format = \"csv\"\nfields = [{ name = \"a\", source = \"A\", type = \"int64\" }, { name = \"a\", source = \"B\", type = \"string\" }]", "datasets.x.fields[1].name", "duplicate field name 'a'"),
        ("format = \"csv\"\nfields = [{ name = \"a\", source = \"A\", aliases = [\"B\", \"B\"], type = \"int64\" }]", "datasets.x.fields[0] (a).aliases", "listed twice"),
        ("format = \"csv\"\nfields = [{ name = \"a\", source = \"A\", aliases = [\"A\"], type = \"int64\" }]", "datasets.x.fields[0] (a).aliases", "source already"),
        ("format = \"csv\"\nfields = [{ name = \"a\", source = \"A\", aliases = [\"\"], type = \"int64\" }]", "datasets.x.fields[0] (a).aliases[0]", "must not be empty"),
        ("format = \"fixed\"\nfields = [{ name = \"a\", start = 1, width = 2, aliases = [\"B\"], type = \"int64\" }]", "datasets.x.fields[0] (a).aliases", "found by start and width"),
        ("format = \"csv\"\nmatch = [\"[unclosed\"]", "datasets.x.match[0]", "bad glob"),
        ("format = \"csv\"\nfields = [{ name = \"a\", source = \"A\", type = \"int64\", colour = 1 }]", "datasets.x.fields[0] (a).colour", "unknown key"),
        ("format = \"csv\"\ncompression = \"lz4\"", "datasets.x.compression", "expected zstd, snappy or none"),
        ("format = \"csv\"\noutput = \"jsonl\"\ncompression = \"snappy\"", "datasets.x.compression", "for parquet output only"),
    ])
    func badMappingsAreRefusedNamingFileDatasetAndKey(body: String, key: String, message: String) throws {
        var text = "[datasets.x]\n\(body)\n"
        if !body.contains("match =") { text += "match = [\"*.csv\"]\n" }
        if !body.contains("fields =") { text += "fields = [{ name = \"a\", source = \"A\", type = \"string\" }]\n" }
        let dir = Self.dir(mapping: text)
        let r = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(r.status == 2)
        #expect(r.stderr.contains("mappings/acme.toml"), "\(r.stderr)")
        #expect(r.stderr.contains(key), "\(r.stderr)")
        #expect(r.stderr.contains(message), "\(r.stderr)")
    }

    @Test func aMappingForAnUnknownClientIsRefused() throws {
        let dir = Self.dir(mapping: Self.orders, client: "globex")
        let r = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(r.status == 2)
        #expect(r.stderr.contains("globex.toml"))
        #expect(r.stderr.contains("does not configure"))
    }
}
