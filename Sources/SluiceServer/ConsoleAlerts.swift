import Foundation
import SluiceAgent
import SluiceManifest

/// The console's alerts page, and a client's delivery calendar.
extension ConsolePages {
    static func alerts(_ rows: [AlertRow], targets: [String]) -> String {
        var b = "<h1>Alerts</h1>"
        if targets.isEmpty {
            b += "<div class=\"empty\">No <code>[[alerts]]</code> in agent.conf: nothing is sent. See README, “Alerts”.</div>"
        } else {
            b += "<p class=\"muted small\">Sent to: \(esc(targets.joined(separator: ", "))). Each alert is kept until its target took it (a 2xx answer, or the mail server accepted it).</p>"
        }
        guard !rows.isEmpty else { return layout("Alerts", b + "<div class=\"empty\">No alerts yet.</div>") }
        b += "<div class=\"scroll\"><table id=\"alerts\"><thead><tr><th>When</th><th>Event</th><th>Client</th><th>Message</th><th>To</th><th>Delivery</th></tr></thead><tbody>"
        for r in rows {
            let e = AlertEvent(json: r.body)
            let severity = e?.severity ?? ""
            let cls = r.resolved ? "ok" : severity == "critical" || severity == "error" ? "bad" : "warn"
            let delivery = r.state == "sent" ? "<span class=\"ok\">sent</span> \(time(r.sent_at))"
                : "<span class=\"warn\">pending</span> · \(r.attempts) attempt\(r.attempts == 1 ? "" : "s")\(r.last_error.map { "<div class=\"err small\">\(esc($0))</div>" } ?? "")"
            b += "<tr><td>\(time(r.created_at))</td><td><span class=\"\(cls)\">\(r.resolved ? "resolved " : "")\(esc(r.event))</span>"
            b += "<div class=\"muted small mono\">\(esc(r.condition))</div></td><td>\(esc(e?.client ?? "—"))</td><td>\(esc(e?.message ?? ""))</td>"
            b += "<td>\(esc(r.alert))</td><td>\(delivery)</td></tr>"
        }
        return layout("Alerts", b + "</tbody></table></div>")
    }

    /// Each expectation's deadlines of the last 30 days, as a row of day cells: on time, late,
    /// missing, or still to come.
    static func calendar(_ expectations: [ExpectationStatus]) -> String {
        guard !expectations.isEmpty else { return "" }
        var b = "<h2 id=\"deliveries\">Deliveries</h2><div class=\"cards\">"
        for x in expectations {
            b += "<div class=\"card expectation\"><h3 class=\"mono\">\(esc(x.match))\(x.source.map { " <span class=\"muted small\">from \(esc($0))</span>" } ?? "")</h3>"
            b += "<div class=\"muted small\">\(esc(x.schedule)) \(esc(x.timezone)), grace \(esc(x.grace)) · next \(time(x.next_deadline))</div>"
            b += "<div class=\"calendar\" style=\"display:flex;flex-wrap:wrap;gap:3px;margin:.5rem 0\">"
            for d in x.deadlines {
                let (color, word) = switch d.status {
                case "on_time": ("var(--ok)", "on time")
                case "late": ("var(--warn)", "late")
                case "missing": ("var(--bad)", "missing")
                default: ("#c9ced8", "to come")
                }
                let title = "\(d.local) \(x.timezone): \(word)\(d.delivered_at.map { ", delivered \($0)" } ?? "")\(d.path.map { " (\($0))" } ?? "")"
                b += "<span class=\"day \(esc(d.status))\" title=\"\(esc(title))\" style=\"width:14px;height:14px;border-radius:3px;background:\(color)\"></span>"
            }
            b += "</div>"
            let counts = Dictionary(grouping: x.deadlines, by: \.status).mapValues(\.count)
            b += "<div class=\"small\"><span class=\"ok\">\(counts["on_time"] ?? 0) on time</span> · <span class=\"warn\">\(counts["late"] ?? 0) late</span>"
            b += " · <span class=\"bad\">\(counts["missing"] ?? 0) missing</span> · last delivery \(time(x.last_fulfilled_at))</div></div>"
        }
        return b + "</div>"
    }
}
