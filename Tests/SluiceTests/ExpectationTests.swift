import Foundation
import SluiceAgent
import SluiceConfig
import SluiceFormats
import SluiceManifest
import SluiceSupport
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Delivery expectations: the cron schedule in a time zone across daylight-saving changes, which
/// delivery fulfils which deadline, and `delivery_late` from a real `sluice run`.
@Suite struct ExpectationTests {
    static func seconds(_ text: String) -> Int64 { Timestamp.nanoseconds(text)! / 1_000_000_000 }

    static func instants(_ cron: String, zone: String, from: String, to: String) throws -> [String] {
        let z = ZoneConverter(zone: TimeZone(identifier: zone)!)
        return try CronSchedule(cron).instants(after: seconds(from), through: seconds(to), utc: z.utc(local:), offset: z.offset(at:))
            .map { String(Timestamp.iso8601(nanoseconds: $0 * 1_000_000_000).prefix(16)) }
    }

    @Test func scheduleFollowsBerlinAcrossBothChangesOf2026() throws {
        // 09:00 on weekdays: 08:00 UTC in winter time, 07:00 UTC from Monday 30 March.
        #expect(try Self.instants("0 9 * * 1-5", zone: "Europe/Berlin", from: "2026-03-26T12:00:00Z", to: "2026-03-31T12:00:00Z")
                == ["2026-03-27T08:00", "2026-03-30T07:00", "2026-03-31T07:00"])
        // 02:30 does not exist on 29 March (02:00 jumps to 03:00): it fires at 03:30 CEST.
        #expect(try Self.instants("30 2 * * *", zone: "Europe/Berlin", from: "2026-03-27T12:00:00Z", to: "2026-03-30T12:00:00Z")
                == ["2026-03-28T01:30", "2026-03-29T01:30", "2026-03-30T00:30"])
        // 02:30 happens twice on 25 October: once, at the later (winter time) one.
        #expect(try Self.instants("30 2 * * *", zone: "Europe/Berlin", from: "2026-10-23T12:00:00Z", to: "2026-10-26T12:00:00Z")
                == ["2026-10-24T00:30", "2026-10-25T01:30", "2026-10-26T01:30"])
        // Names, lists, steps, Sunday as 7, and either day field when both are set.
        #expect(try Self.instants("0 */12 1,15 * sun", zone: "UTC", from: "2026-11-28T00:00:00Z", to: "2026-12-02T00:00:00Z")
                == ["2026-11-29T00:00", "2026-11-29T12:00", "2026-12-01T00:00", "2026-12-01T12:00"])
        #expect(try Self.instants("0 6 * jan-feb 7", zone: "UTC", from: "2026-12-01T00:00:00Z", to: "2027-01-05T00:00:00Z") == ["2027-01-03T06:00"])
        for bad in ["0 9 * *", "61 * * * *", "0 9 * * fri-mon", "*/0 * * * *", "0 9 32 * *"] {
            #expect(throws: CronSchedule.SyntaxError.self, "\(bad)") { try CronSchedule(bad) }
        }
    }

    @Test func eachDeliveryFulfilsOneDeadlineOnTimeOrLateAcrossTheSpringChange() throws {
        let x = Expectation(match: "orders_*.csv", glob: try Glob("orders_*.csv"), schedule: try CronSchedule("0 9 * * 1-5"),
                            timezone: "Europe/Berlin", graceNanoseconds: 30 * 60_000_000_000, source: nil)
        let check = ExpectationCheck(client: "acme", expectation: x)
        func arrival(_ path: String, _ at: String, source: String = "drop") -> Manifest.Arrival {
            Manifest.Arrival(source: source, path: Array(path.utf8), displayPath: path, ingestedAt: at)
        }
        let arrivals = [
            arrival("orders_0327.csv", "2026-03-27T07:50:00.000000Z"),      // on time (due 08:30 UTC)
            arrival("orders_0330.csv.gz", "2026-03-30T07:45:00.000000Z"),   // late: summer time, due 07:30 UTC
            arrival("other.csv", "2026-03-31T06:00:00.000000Z"),            // does not match
            arrival("orders_0331.csv", "2026-03-31T06:10:00.000000Z"),      // on time
            arrival("orders_extra.csv", "2026-03-31T06:20:00.000000Z"),     // a second one in the same window
        ]
        let all = check.deadlines(now: Self.seconds("2026-04-01T12:00:00Z"), arrivals: arrivals)
        let recent = all.filter { $0.deadline >= "2026-03-27" }.map { "\($0.deadline) \($0.local) \($0.status) \($0.path ?? "-")" }
        #expect(recent == [
            "2026-03-27T08:00:00Z 2026-03-27 09:00 on_time orders_0327.csv",
            "2026-03-30T07:00:00Z 2026-03-30 09:00 late orders_0330.csv.gz",
            "2026-03-31T07:00:00Z 2026-03-31 09:00 on_time orders_0331.csv",
            "2026-04-01T07:00:00Z 2026-04-01 09:00 missing -",
            "2026-04-02T07:00:00Z 2026-04-02 09:00 pending -",
        ], "\(recent)")
        // The extra file of 31 March caught up the earliest deadline still missing in the 30 days shown (3 March).
        #expect(all.filter { $0.path == "orders_extra.csv" }.map { "\($0.deadline) \($0.status)" } == ["2026-03-03T08:00:00Z late"], "\(all)")
        // Alerts only for deadlines due after the expectation was first seen: the missing one,
        // and the resolution of the one delivered late.
        let alerts = check.alerts(all, firstSeen: Self.seconds("2026-03-29T00:00:00Z"))
        #expect(alerts.map { "\($0.id) \($0.resolved)" } == [
            "delivery_late:acme/orders_*.csv@2026-03-30T07:00:00Z true",
            "delivery_late:acme/orders_*.csv@2026-04-01T07:00:00Z false",
        ], "\(alerts.map(\.id))")
        #expect(alerts[1].message.contains("by 2026-04-01 09:00 Europe/Berlin") && alerts[1].severity == "warning", "\(alerts[1].message)")
        let status = check.status(now: Self.seconds("2026-04-01T12:00:00Z"), arrivals: arrivals)
        #expect(status.next_deadline == "2026-04-02T07:00:00Z" && status.missing.contains("2026-04-01T07:00:00Z"))
        #expect(status.last_fulfilled_at == "2026-03-31T06:20:00Z" && status.last_fulfilled_deadline == "2026-03-03T08:00:00Z", "\(status)")
    }

    @Test func badExpectationsAreRefusedNamingTheKey() throws {
        let dir = TempDir("expect-config")
        let cases: [(String, String)] = [
            ("schedule = \"0 9 * *\"\nmatch = \"a*\"", "clients.acme.expect[0].schedule"),
            ("schedule = \"0 9 * * *\"\nmatch = \"a*\"\ntimezone = \"Mars/Olympus\"", "clients.acme.expect[0].timezone"),
            ("schedule = \"0 9 * * *\"\nmatch = \"a*\"\nsource = \"ftp\"", "clients.acme.expect[0].source"),
            ("schedule = \"0 9 * * *\"\nmatch = \"a*\"\ngrace = \"soon\"", "clients.acme.expect[0].grace"),
            ("schedule = \"0 9 * * *\"", "missing required key 'match'"),
            ("schedule = \"0 9 * * *\"\nmatch = \"a*\"\ncolour = 1", "clients.acme.expect[0].colour"),
        ]
        for (body, key) in cases {
            dir.config(extra: "\n[[clients.acme.expect]]\n" + body)
            let r = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
            #expect(r.status == 2 && r.stderr.contains(key), "\(body): \(r.status) \(r.stderr)")
        }
    }

    /// A real `sluice run` with an expectation every two minutes and no grace: the missed deadline
    /// alerts `delivery_late`, and a delivery resolves it (same id); `sluice status` shows it.
    @Test func aMissedDeadlineAlertsAndTheDeliveryResolvesIt() throws {
        let receiver = try AlertReceiver()
        try receiver.startHTTP()
        let dir = TempDir("expect-daemon")
        let port = try SSHServer.freePort()
        DaemonTests.folderConfig(dir, port: port, agentExtra: "alert_retry = \"1s\"")
        let conf = try String(contentsOfFile: dir.sub("agent.conf"), encoding: .utf8)
        dir.write("agent.conf", conf + """

            [[clients.acme.expect]]
            match = "orders_*.csv"
            schedule = "*/2 * * * *"
            timezone = "Europe/Berlin"
            grace = "0s"
            source = "drop"
            """ + receiver.webhook(events: ["delivery_late"]))
        let d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        func late() -> [[String: Any]] { receiver.delivered.filter { $0["event"] as? String == "delivery_late" } }
        // The first even minute after the start passes with nothing delivered.
        #expect(eventually(170) { !late().isEmpty }, "\(receiver.received) \(d.log)")
        let first = try #require(late().first)
        let id = try #require(first["id"] as? String)
        #expect(id.hasPrefix("delivery_late:acme/drop:orders_*.csv@") && first["resolved"] as? Bool == false && first["client"] as? String == "acme", "\(first)")
        let (r, rows) = try SluiceBinary.json(["status"], config: dir.sub("agent.conf"))
        let x = ((rows as? [[String: Any]])?.first?["expectations"] as? [[String: Any]])?.first
        #expect(r.status == 0 && x?["match"] as? String == "orders_*.csv" && x?["next_deadline"] as? String != nil
                && !((x?["missing"] as? [String]) ?? []).isEmpty, "\(r.stdout)")
        #expect(((d.status()["expectations"] as? [[String: Any]]) ?? []).count == 1, "\(d.status())")
        // The console: the alert on /alerts, the missed deadline on the client's calendar.
        let alertsPage = d.get("/alerts")
        #expect(alertsPage?.status == 200 && alertsPage?.body.contains("delivery_late") == true && alertsPage?.body.contains(">hook<") == true, "\(alertsPage?.body ?? "")")
        let clientPage = d.get("/clients/acme")
        #expect(clientPage?.status == 200 && clientPage?.body.contains("id=\"deliveries\"") == true && clientPage?.body.contains("class=\"day missing\"") == true,
                "\(clientPage?.body.prefix(3000) ?? "")")
        DaemonTests.renameIn(dir, "drop-acme/orders_1.csv", "id\n1\n")
        // Delivered within a minute of the alert: the missed deadline's file, late.
        #expect(eventually(60) { late().contains { $0["id"] as? String == id && $0["resolved"] as? Bool == true } }, "\(receiver.received) \(d.log)")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }
}
