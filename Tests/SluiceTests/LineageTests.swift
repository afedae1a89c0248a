import Foundation
import SluiceTestSupport
import Testing

/// OpenLineage events of a real `sluice pull`, received by a server that checks each against
/// openlineage-python's models of the spec (Tests/support/alert_receiver.py, mode lineage).
@Suite(.enabled(if: AlertReceiver.lineageAvailable, "needs openlineage-python"))
struct LineageTests {
    @Test func aPullEmitsValidRunEventsForItsIngestAndEachTransform() throws {
        let receiver = try AlertReceiver()
        try receiver.startHTTP(lineage: true)
        let dir = TempDir("lineage")
        dir.write("secrets/ol.key", "ol-key-\(UUID().uuidString)\n")
        let key = try String(contentsOfFile: dir.sub("secrets/ol.key"), encoding: .utf8).trimmingCharacters(in: .newlines)
        dir.config(extra: """

            [lineage]
            url = "http://127.0.0.1:\(receiver.port)/api/v1/lineage"
            namespace = "sluice-test"
            api_key_file = "secrets/ol.key"
            """)
        dir.write("mappings/acme.toml", AlertTests.mapping)
        dir.write("drop/orders_1.csv", "id,amount\n1,2.50\n2,3.00\n")
        dir.write("drop/events_1.json", "{\"items\": [{\"id\": 1},")
        let (r, _) = try SluiceBinary.json(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")  // events_1.json fails its transform
        let got = receiver.received
        #expect(got.count == 6 && got.allSatisfy { $0["valid"] as? Bool == true && $0["path"] as? String == "/api/v1/lineage" },
                "\(got.map { "\($0["error"] ?? "")" })")
        #expect(got.allSatisfy { ($0["headers"] as? [String: String])?["authorization"] == "Bearer \(key)" })
        let events = got.compactMap { try? JSONSerialization.jsonObject(with: Data(($0["body"] as? String ?? "").utf8)) as? [String: Any] }
        func job(_ e: [String: Any]) -> String { (e["job"] as? [String: Any])?["name"] as? String ?? "" }
        let summary = events.map { "\(job($0)) \($0["eventType"] as? String ?? "")" }.sorted()
        #expect(summary == ["ingest.acme.drop COMPLETE", "ingest.acme.drop START", "transform.acme.events FAIL", "transform.acme.events START",
                            "transform.acme.orders COMPLETE", "transform.acme.orders START"], "\(summary)")
        // Each run's START comes before its end, with the same runId.
        for name in ["ingest.acme.drop", "transform.acme.orders", "transform.acme.events"] {
            let run = events.filter { job($0) == name }
            #expect(run.first?["eventType"] as? String == "START" && Set(run.map { ($0["run"] as? [String: Any])?["runId"] as? String ?? "" }).count == 1)
            #expect(run.allSatisfy { ($0["job"] as? [String: Any])?["namespace"] as? String == "sluice-test" })
        }
        let ingest = try #require(events.first { job($0) == "ingest.acme.drop" && $0["eventType"] as? String == "COMPLETE" })
        let inputs = (ingest["inputs"] as? [[String: Any]] ?? []).map { "\($0["namespace"] ?? "") \($0["name"] ?? "")" }.sorted()
        #expect(inputs.count == 2 && inputs.allSatisfy { $0.hasPrefix("file://") && $0.contains(dir.sub("drop/")) }, "\(inputs)")
        #expect((ingest["outputs"] as? [[String: Any]] ?? []).allSatisfy { ($0["name"] as? String ?? "").contains("/lake/raw/acme/drop/") })
        let orders = try #require(events.first { job($0) == "transform.acme.orders" && $0["eventType"] as? String == "COMPLETE" })
        let out = try #require((orders["outputs"] as? [[String: Any]])?.first)
        let fields = ((out["facets"] as? [String: Any])?["schema"] as? [String: Any])?["fields"] as? [[String: Any]]
        #expect(fields?.map { "\($0["name"] ?? "") \($0["type"] ?? "")" } == ["id int64", "amount decimal(10,2)"], "\(out)")
        let stats = (out["outputFacets"] as? [String: Any])?["outputStatistics"] as? [String: Any]
        #expect(stats?["rowCount"] as? Int == 2 && (stats?["size"] as? Int ?? 0) > 0 && (out["name"] as? String ?? "").hasSuffix("/lake/processed/acme/orders"), "\(out)")
        let failed = try #require(events.first { job($0) == "transform.acme.events" && $0["eventType"] as? String == "FAIL" })
        let message = (((failed["run"] as? [String: Any])?["facets"] as? [String: Any])?["errorMessage"] as? [String: Any])?["message"] as? String
        #expect(message?.contains("unexpected end of input") == true, "\(failed)")
        // All sent: the outbox has nothing left.
        let (_, pending) = try SluiceBinary.json(["alerts", "--pending"], config: dir.sub("agent.conf"))
        #expect((pending as? [Any])?.isEmpty == true, "\(pending)")
    }
}
