import Foundation
import HTTPTypes
import Hummingbird
import SluiceAgent
import SluiceLake
import SluiceManifest
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform

/// The console's HTML: plain string building, escaped at every insertion, one stylesheet,
/// no build step. Readable on a laptop and a phone; every time shown local and UTC.
enum ConsolePages {

    static func html(_ status: HTTPResponse.Status, _ body: String) -> Response {
        var headers: HTTPFields = [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"]
        headers[HTTPField.Name("Content-Security-Policy")!] = "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// HTML-escaped, with control characters as `%HH` (`PrintableText`): a file name with a
    /// newline or an escape sequence in it shows as one visible line.
    static func esc(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in PrintableText.escape(s) {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// A path segment for a link.
    static func url(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
    }

    static let style = """
        :root{--fg:#1d2430;--muted:#5b6575;--line:#dde2ea;--bg:#f6f8fb;--ok:#17803d;--bad:#b42318;--warn:#9a6700;--accent:#2456c7}
        *{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
        header{background:#fff;border-bottom:1px solid var(--line);padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:center}
        header strong{font-size:1.05rem}header a{color:var(--fg);text-decoration:none}header a:hover{color:var(--accent)}
        main{max-width:1180px;margin:0 auto;padding:1rem}h1{font-size:1.35rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.6rem 0 .6rem}
        .scroll{overflow-x:auto;background:#fff;border:1px solid var(--line);border-radius:8px}
        table{border-collapse:collapse;width:100%;font-size:.92rem}th,td{padding:.45rem .6rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
        th{background:#fafbfd;font-weight:600;white-space:nowrap}th.num{white-space:normal;text-align:right}tr:last-child td{border-bottom:0}td.num{text-align:right;white-space:nowrap}
        td.err{min-width:14rem;max-width:30rem;overflow-wrap:anywhere}.pager{display:flex;gap:1rem;align-items:center;margin:.5rem 0}
        .mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem;word-break:break-all}td.mono{min-width:8rem}
        .ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.muted{color:var(--muted)}.small{font-size:.82rem}
        .empty{background:#fff;border:1px dashed var(--line);border-radius:8px;padding:1rem;color:var(--muted)}
        .cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:.8rem}
        .card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.7rem .8rem}
        .card h3{margin:0 0 .3rem;font-size:1rem}svg{width:100%;height:auto;display:block}
        button,.button{background:var(--accent);color:#fff;border:0;border-radius:6px;padding:.5rem .9rem;font:inherit;cursor:pointer}
        select,input[type=text],input[type=password],input[type=file]{font:inherit;padding:.4rem;border:1px solid var(--line);border-radius:6px;max-width:100%}
        pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid var(--line);border-radius:8px;padding:.7rem;font-size:.82rem}
        progress{width:100%;height:.9rem}.pill{display:inline-block;padding:0 .45rem;border-radius:999px;background:#eef1f6;font-size:.8rem}
        @media (max-width:640px){main{padding:.6rem}th,td{padding:.35rem .4rem}.hide-narrow{display:none}}
        """

    static func layout(_ title: String, _ body: String) -> String {
        """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(esc(title)) · Sluice</title><style>\(style)</style></head><body>
        <header><strong><a href="/">Sluice</a></strong><a href="/">Overview</a><a href="/upload">Upload</a><a href="/audit">Audit</a><a href="/alerts">Alerts</a>
        <span class="muted small">\(esc(ProcessInfo.processInfo.hostName))</span></header>
        <main>\(body)</main>\(localTimes)</body></html>
        """
    }

    // MARK: Formatting

    /// A time in UTC, plus the host's local time when the host is not on UTC; the page's
    /// script adds the browser's local time.
    static func time(_ iso: String?) -> String {
        guard let iso, let ns = Timestamp.nanoseconds(iso) else { return "<span class=\"muted\">—</span>" }
        // The manifest's own form, "2026-11-25T10:13:25.123456Z", read as UTC text.
        var text = "\(esc(String(iso.prefix(10)) + " " + String(iso.dropFirst(11).prefix(8)))) UTC"
        let date = Date(timeIntervalSince1970: Double(ns) / 1e9)
        if TimeZone.current.secondsFromGMT(for: date) != 0 {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.dateFormat = "HH:mm:ss zzz"
            f.timeZone = .current
            text += "<span class=\"muted small\"> · \(esc(f.string(from: date))) host</span>"
        }
        return "<time datetime=\"\(esc(iso))\">\(text)</time>"
    }

    /// Adds each time's local form, in the browser's zone.
    static let localTimes = """
        <script>for (const t of document.querySelectorAll("time[datetime]")) { const d = new Date(t.getAttribute("datetime"));
        if (!isNaN(d)) { const s = document.createElement("span"); s.className = "muted small local";
        s.textContent = " · local " + d.toLocaleString([], {dateStyle: "medium", timeStyle: "medium"}); t.appendChild(s); } }</script>
        """

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var v = Double(n)
        var i = 0
        while v >= 1000 && i < units.count - 1 {
            v /= 1000
            i += 1
        }
        return i == 0 ? "\(n) B" : (v >= 100 ? "\(Int(v.rounded()))" : fmt(v)) + " " + units[i]
    }

    static func status(_ s: String?) -> String {
        guard let s else { return "<span class=\"muted\">—</span>" }
        let cls = ["ok", "stored"].contains(s) ? "ok" : (["failed", "interrupted", "aborted"].contains(s) ? "bad" : (["partial", "held"].contains(s) ? "warn" : "muted"))
        return "<span class=\"pill \(cls)\">\(esc(s))</span>"
    }

    static func hidden(_ csrf: String) -> String { "<input type=\"hidden\" name=\"csrf\" value=\"\(esc(csrf))\">" }

    static func message(title: String, text: String) -> String {
        layout(title, "<h1>\(esc(title))</h1><p>\(esc(text))</p><p><a href=\"/\">Back to the overview</a></p>")
    }

    // MARK: Overview

    struct SourceRow {
        var client: String
        var source: String
        var type: String
        var state: String
        var summary: Manifest.SourceSummary
        var filesToday: Int
        var bytesToday: Int64
    }

    static func overview(rows: [SourceRow], clients: [String], daily: [Manifest.DailyIngest], since: String, held: [String: Int],
                         alive: Bool, ready: Bool, queue: Int, agent: String) -> String {
        var b = "<h1>Overview</h1>"
        b += "<p class=\"small\">\(alive ? "<span class=\"ok\">● running</span>" : "<span class=\"bad\">● a service loop has stopped</span>")"
        b += " · \(ready ? "ready" : "<span class=\"warn\">not ready yet</span>") · \(queue) transform\(queue == 1 ? "" : "s") queued · agent \(esc(agent))</p>"
        if rows.isEmpty {
            b += "<div class=\"empty\">No sources yet — add one to agent.conf (a <code>[clients.NAME.sources.SOURCE]</code> table) and reload with <code>systemctl reload sluice</code>.</div>"
            return layout("Overview", b)
        }
        b += "<div class=\"scroll\"><table><thead><tr><th>Client</th><th>Source</th><th class=\"hide-narrow\">Type</th><th>Last success</th><th>Last error</th>"
        b += "<th class=\"num\">Files today</th><th class=\"num\">Bytes today</th><th class=\"num\">Failed transforms</th>"
        b += "<th class=\"num\">Held <span class=\"muted small\">(client)</span></th></tr></thead><tbody>"
        var heldShown = Set<String>()
        for r in rows {
            let s = r.summary
            b += "<tr><td><a href=\"/clients/\(url(r.client))\">\(esc(r.client))</a></td><td>\(esc(r.source))"
            if !r.state.isEmpty { b += " <span class=\"muted small\">\(esc(r.state))</span>" }
            b += "</td><td class=\"hide-narrow\">\(esc(r.type))</td><td>\(time(s.lastSuccess))</td><td class=\"err\">"
            if let e = s.lastError {
                // An error that a later success put behind it is history, not an alarm.
                if s.errorIsCurrent {
                    b += "<span class=\"bad current-error\">\(esc(e))</span><br>\(time(s.lastErrorAt))"
                } else {
                    b += "<span class=\"muted small\">none since the last success; before it: </span><span class=\"muted past-error\">\(esc(e))</span><br>\(time(s.lastErrorAt))"
                }
            } else {
                b += "<span class=\"muted\">none</span>"
            }
            b += "</td><td class=\"num\">\(r.filesToday)</td><td class=\"num\">\(bytes(r.bytesToday))</td>"
            b += "<td class=\"num\">\(s.failedTransforms > 0 ? "<a class=\"bad\" href=\"/clients/\(url(r.client))#transforms\">\(s.failedTransforms)</a>" : "0")</td>"
            // Held units are the client's (one mapping): counted on its first source's row.
            let n = held[r.client] ?? 0
            let cell = heldShown.insert(r.client).inserted ? (n > 0 ? "<a class=\"warn held-count\" href=\"/clients/\(url(r.client))#held\">\(n)</a>" : "0") : ""
            b += "<td class=\"num\">\(cell)</td></tr>"
        }
        b += "</tbody></table></div>"
        b += "<h2>Last 30 days</h2><div class=\"cards\">"
        for c in clients {
            b += "<div class=\"card\"><h3><a href=\"/clients/\(url(c))\">\(esc(c))</a></h3>\(chart(daily.filter { $0.client == c }, since: since))</div>"
        }
        b += "</div>"
        return layout("Overview", b)
    }

    /// Files (bars) and bytes (line) per UTC day for 30 days, as inline SVG.
    static func chart(_ days: [Manifest.DailyIngest], since: String) -> String {
        var byDay: [String: Manifest.DailyIngest] = [:]
        for d in days { byDay[d.day] = d }
        let start = Timestamp.nanoseconds("\(since)T00:00:00Z") ?? 0
        let labels = (0..<30).map { i in String(Timestamp.iso8601(nanoseconds: start + Int64(i) * 86_400_000_000_000).prefix(10)) }
        let maxFiles = max(1, labels.map { byDay[$0]?.files ?? 0 }.max() ?? 1)
        let maxBytes = max(1, labels.map { byDay[$0]?.bytes ?? 0 }.max() ?? 1)
        let (w, h, top) = (300.0, 70.0, 6.0)
        let step = w / 30
        let totalFiles = days.reduce(0) { $0 + $1.files }
        let totalBytes = days.reduce(Int64(0)) { $0 + $1.bytes }
        var svg = "<svg viewBox=\"0 0 \(Int(w)) \(Int(h + 14))\" role=\"img\" aria-label=\"\(totalFiles) files, \(bytes(totalBytes)) in 30 days\">"
        svg += "<line x1=\"0\" y1=\"\(h)\" x2=\"\(w)\" y2=\"\(h)\" stroke=\"#dde2ea\"/>"
        var points: [String] = []
        for (i, day) in labels.enumerated() {
            let f = byDay[day]?.files ?? 0
            let by = byDay[day]?.bytes ?? 0
            let bh = (h - top) * Double(f) / Double(maxFiles)
            let x = Double(i) * step
            svg += "<rect x=\"\(fmt(x + 1))\" y=\"\(fmt(h - bh))\" width=\"\(fmt(step - 2))\" height=\"\(fmt(bh))\" fill=\"#9db6ea\">"
            svg += "<title>\(day): \(f) file\(f == 1 ? "" : "s"), \(bytes(by))</title></rect>"
            points.append("\(fmt(x + step / 2)),\(fmt(h - (h - top) * Double(by) / Double(maxBytes)))")
        }
        svg += "<polyline points=\"\(points.joined(separator: " "))\" fill=\"none\" stroke=\"#2456c7\" stroke-width=\"1.5\"/>"
        svg += "<text x=\"0\" y=\"\(Int(h + 12))\" font-size=\"9\" fill=\"#5b6575\">\(labels[0])</text>"
        svg += "<text x=\"\(Int(w))\" y=\"\(Int(h + 12))\" font-size=\"9\" fill=\"#5b6575\" text-anchor=\"end\">\(labels[29])</text></svg>"
        svg += "<p class=\"small muted\" style=\"margin:.3rem 0 0\">\(totalFiles) files, \(bytes(totalBytes)) · bars: files per day, line: bytes per day</p>"
        return svg
    }

    /// `v` with one decimal, as `%.1f` writes it (without Foundation's formatter, which was
    /// most of the overview's time: a chart has 60 numbers per client).
    static func fmt(_ v: Double) -> String {
        guard v.isFinite else { return "0.0" }
        let tenths = Int((abs(v) * 10).rounded())
        return (v < 0 && tenths > 0 ? "-" : "") + "\(tenths / 10).\(tenths % 10)"
    }

    // MARK: Client

    /// Which page of a list is shown: `offset` rows come before it.
    struct Paging {
        var offset: Int
        var perPage: Int
        var total: Int
        var first: Int { offset + 1 }
        func last(shown: Int) -> Int { offset + shown }
        var page: Int { offset / perPage + 1 }
        var pages: Int { max(1, (total + perPage - 1) / perPage) }
    }

    static func client(id: String, displayName: String?, sources: [String], versions: [Manifest.VersionRow], paging: Paging,
                       held: [Manifest.TransformRow] = [], heldTotal: Int = 0, transforms: [Manifest.TransformRow], expectations: [ExpectationStatus] = [],
                       csrf: String = "", message: String? = nil) -> String {
        var b = "<h1>\(esc(displayName ?? id)) <span class=\"muted small\">\(esc(id)) · sources: \(esc(sources.joined(separator: ", ")))</span></h1>"
        b += calendar(expectations)
        b += "<h2>Versions</h2>"
        if versions.isEmpty && paging.total == 0 {
            b += "<div class=\"empty\">No files from \(esc(id)) yet — they appear here once a source delivers one (or upload one on the <a href=\"/upload\">upload page</a>).</div>"
        } else {
            b += "<div class=\"pager small\"><span id=\"version-count\">showing \(versions.isEmpty ? 0 : paging.first)–\(paging.last(shown: versions.count)) "
                + "of \(paging.total.formatted()) version\(paging.total == 1 ? "" : "s"), newest first</span>"
            // Each link names the row its page starts after (or ends before): keyset paging.
            if paging.offset > 0, let newest = versions.first {
                let cursor = Manifest.VersionCursor(ingestedAt: newest.ingestedAt, versionID: newest.id).text
                b += "<a id=\"newer\" href=\"/clients/\(url(id))?before=\(url(cursor))&amp;n=\(max(0, paging.offset - paging.perPage))\">← newer</a>"
            }
            if paging.last(shown: versions.count) < paging.total, let oldest = versions.last {
                let cursor = Manifest.VersionCursor(ingestedAt: oldest.ingestedAt, versionID: oldest.id).text
                b += "<a id=\"older\" href=\"/clients/\(url(id))?after=\(url(cursor))&amp;n=\(paging.last(shown: versions.count))\">older →</a>"
            }
            b += "<span class=\"muted\">page \(min(paging.page, paging.pages)) of \(paging.pages)</span></div>"
            b += "<div class=\"scroll\"><table><thead><tr><th>Path</th><th class=\"num\">Version</th><th class=\"num\">Size</th><th class=\"hide-narrow\">SHA-256</th>"
            b += "<th>When</th><th>Source</th><th></th></tr></thead><tbody>"
            for v in versions {
                b += "<tr><td class=\"mono\">\(esc(v.path))</td><td class=\"num\">\(v.version)</td><td class=\"num\">\(bytes(v.size))</td>"
                b += "<td class=\"mono small hide-narrow\" title=\"\(esc(v.sha256))\">\(esc(String(v.sha256.prefix(16))))…</td><td>\(time(v.ingestedAt))</td>"
                b += "<td>\(esc(v.source))</td><td><a href=\"/versions/\(v.id)/download\">download</a></td></tr>"
            }
            b += "</tbody></table></div>"
        }
        b += heldSection(id: id, held: held, total: heldTotal, csrf: csrf, message: message)
        b += "<h2 id=\"transforms\">Transforms</h2>"
        if transforms.isEmpty {
            b += "<div class=\"empty\">No transforms yet — add a mapping file, <code>mappings/\(esc(id)).toml</code>, and new versions become Parquet.</div>"
        } else {
            b += "<div class=\"scroll\"><table><thead><tr><th>Path</th><th class=\"num\">Version</th><th>Dataset</th><th>Status</th><th class=\"num\">Rows written</th>"
            b += "<th class=\"num\">Rows rejected</th><th>Reason</th><th>When</th></tr></thead><tbody>"
            for t in transforms {
                let status = ["failed", "held"].contains(t.status) ? "<a href=\"/transforms/\(t.id)\">\(ConsolePages.status(t.status))</a>" : ConsolePages.status(t.status)
                let member = t.member.map { " <span class=\"muted\">member</span> \(esc($0))" } ?? ""
                b += "<tr><td class=\"mono\"><a href=\"/transforms/\(t.id)\">\(esc(t.path))</a>\(member)</td><td class=\"num\">\(t.version)</td>"
                b += "<td>\(esc(t.dataset ?? "—"))</td><td>\(status)\(t.isLatest ? "" : " <span class=\"muted small\">superseded</span>")</td>"
                b += "<td class=\"num\">\(t.rowsWritten)</td><td class=\"num\">\(t.rowsRejected > 0 ? "<span class=\"warn\">\(t.rowsRejected)</span>" : "0")</td>"
                b += "<td class=\"err reason\">\(t.error.map { "<span class=\"\(t.isLatest && t.status == "failed" ? "bad" : "muted")\">\(esc($0))</span>" } ?? "")</td>"
                b += "<td>\(time(t.transformedAt))</td></tr>"
            }
            b += "</tbody></table></div>"
        }
        return layout(id, b)
    }

    /// The units a schema-change policy held, each with what changed, and the button that
    /// re-runs them all with the mapping as it is now.
    static func heldSection(id: String, held: [Manifest.TransformRow], total: Int, csrf: String, message: String?) -> String {
        var b = ""
        if let message { b += "<p class=\"card ok\" id=\"held-result\">Re-run of the held units finished: \(esc(message)).</p>" }
        guard !held.isEmpty else { return b }
        b += "<h2 id=\"held\">Held <span class=\"muted small\">\(total) version\(total == 1 ? "" : "s") held by a schema-change policy</span></h2>"
        b += "<p class=\"small\">Nothing was written for these. Change the mapping (an alias, a type, the dataset's <code>on_*</code> policy) "
            + "or accept the change as it is, then re-run them: the re-run reads the mapping as it is now.</p>"
        b += "<div class=\"scroll\"><table><thead><tr><th>Path</th><th class=\"num\">Version</th><th>Dataset</th><th>What changed</th><th>When</th></tr></thead><tbody>"
        for t in held {
            let member = t.member.map { " <span class=\"muted\">member</span> \(esc($0))" } ?? ""
            b += "<tr class=\"held-unit\"><td class=\"mono\"><a href=\"/transforms/\(t.id)\">\(esc(t.path))</a>\(member)</td><td class=\"num\">\(t.version)</td>"
            b += "<td>\(esc(t.dataset ?? "—"))</td><td class=\"drift\">\(drift(t))</td><td>\(time(t.transformedAt))</td></tr>"
        }
        b += "</tbody></table></div>"
        b += "<form method=\"post\" action=\"/clients/\(url(id))/held/rerun\">\(hidden(csrf))<button type=\"submit\">Re-run the held units</button></form>"
        return b
    }

    /// A unit's drift as a list: added, removed, renamed, moved, type changes with examples;
    /// the recorded reason when there is no drift to show (a policy on a first delivery).
    static func drift(_ t: Manifest.TransformRow) -> String {
        guard let json = t.schemaDrift, let d = try? SchemaDrift(json: json) else {
            return t.error.map { "<span class=\"muted\">\(esc($0))</span>" } ?? ""
        }
        var items: [String] = []
        if !d.added.isEmpty { items.append("added: " + d.added.map { "<code>\(esc($0))</code>" }.joined(separator: ", ")) }
        if !d.removed.isEmpty { items.append("removed: " + d.removed.map { "<code>\(esc($0))</code>" }.joined(separator: ", ")) }
        for r in d.renamed { items.append("renamed: <code>\(esc(r.from))</code> → <code>\(esc(r.to))</code> (field \(esc(r.field)))") }
        for m in d.moved { items.append("moved: <code>\(esc(m.column))</code> from position \(m.from) to \(m.to)") }
        for c in d.typeChanges {
            let examples = c.examples.isEmpty ? "" : ", e.g. " + c.examples.map { "<code>\(esc($0))</code>" }.joined(separator: " ")
            items.append("type: <code>\(esc(c.column))</code> \(c.from.rawValue) → \(c.to.rawValue)\(examples)")
        }
        return "<ul class=\"small\">" + items.map { "<li>\($0)</li>" }.joined() + "</ul>"
    }

    // MARK: Transform

    static func transform(_ t: Manifest.TransformRow, rejects: [String], csrf: String, message: String?) -> String {
        var b = "<p class=\"small\"><a href=\"/clients/\(url(t.client))\">← \(esc(t.client))</a></p>"
        b += "<h1>Transform of <span class=\"mono\">\(esc(t.path))</span> v\(t.version)</h1>"
        if let message {
            b += "<p class=\"card \(message == "ok" ? "ok" : "bad")\">Re-run finished: \(esc(message)).</p>"
        }
        b += "<div class=\"scroll\"><table><tbody>"
        b += "<tr><th>Status</th><td>\(status(t.status))\(t.isLatest ? "" : " <span class=\"muted small\">superseded by a later run</span>")</td></tr>"
        if let member = t.member { b += "<tr><th>Archive member</th><td class=\"mono\">\(esc(member))</td></tr>" }
        b += "<tr><th>Dataset</th><td>\(esc(t.dataset ?? "— (no dataset matched: kept raw)"))</td></tr>"
        b += "<tr><th>Source</th><td>\(esc(t.source))</td></tr>"
        b += "<tr><th>Rows</th><td>\(t.rowsWritten) written, \(t.rowsRejected) rejected</td></tr>"
        b += "<tr><th>When</th><td>\(time(t.transformedAt))</td></tr>"
        if let out = t.outputPath { b += "<tr><th>Output</th><td class=\"mono\">\(esc(out))</td></tr>" }
        if let r = t.rejectsPath { b += "<tr><th>Rejects</th><td class=\"mono\">\(esc(r))</td></tr>" }
        b += "</tbody></table></div>"
        if let e = t.error {
            b += "<h2>Reason</h2><pre class=\"bad\">\(esc(e))</pre>"
        }
        if !rejects.isEmpty {
            b += "<h2>First rejected rows</h2><div class=\"scroll\"><table><thead><tr><th class=\"num\">Row</th><th>Values</th><th>Why</th></tr></thead><tbody>"
            for line in rejects {
                let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
                let row = obj?["row"].map { "\($0)" } ?? obj?["_row_number"].map { "\($0)" } ?? "?"
                let values = obj?["values"].flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.fragmentsAllowed, .sortedKeys]) }
                    .map { String(decoding: $0, as: UTF8.self) } ?? line
                let reasons = (obj?["reasons"] as? [String: Any])?.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; ") ?? ""
                b += "<tr><td class=\"num\">\(esc(row))</td><td class=\"mono\">\(esc(String(values.prefix(600))))</td><td>\(esc(reasons))</td></tr>"
            }
            b += "</tbody></table></div>"
        }
        if t.schemaDrift != nil { b += "<h2>What changed since the delivery before</h2>\(drift(t))" }
        if (t.status == "failed" || t.status == "held") && t.isLatest {
            b += "<h2>Re-run</h2><p>Fix the mapping file (or the file's format) first; the re-run reads the mapping as it is now.</p>"
            b += "<form method=\"post\" action=\"/transforms/\(t.id)/rerun\">\(hidden(csrf))<button type=\"submit\">Re-run this transform</button></form>"
        }
        return layout("Transform", b)
    }

    // MARK: Audit

    static func audit(_ r: AuditReport) -> String {
        let clean = r.missing.isEmpty && r.corrupt.isEmpty && r.orphans.isEmpty
        var b = "<h1>Audit <span class=\"muted small\">quick: sizes, not contents (run <code>sluice audit</code> to re-hash)</span></h1>"
        b += clean ? "<p class=\"card ok\">The lake matches the manifest: \(r.checked) files checked, \(r.ok) ok.</p>"
            : "<p class=\"card bad\">The lake does not match the manifest: \(r.missing.count) missing, \(r.corrupt.count) with the wrong size, \(r.orphans.count) not in the manifest (of \(r.checked) checked).</p>"
        func list(_ title: String, _ items: [String]) -> String {
            items.isEmpty ? "" : "<h2>\(esc(title))</h2><pre>\(items.prefix(200).map(esc).joined(separator: "\n"))\(items.count > 200 ? "\n… and \(items.count - 200) more" : "")</pre>"
        }
        b += list("Missing", r.missing)
        b += list("Wrong size", r.corrupt.map { "\($0.lakePath): \($0.actualSize) bytes, the manifest says \($0.expectedSize)" })
        b += list("Not in the manifest", r.orphans)
        b += list("Leftover temp files (removed at the next start)", r.tempFiles)
        return layout("Audit", b)
    }

    // MARK: Upload

    static func upload(targets: [(client: String, source: String)], csrf: String) -> String {
        var b = "<h1>Upload files</h1>"
        guard !targets.isEmpty else {
            b += "<div class=\"empty\">No upload sources yet — add one to agent.conf (<code>type = \"http\"</code> under a client's sources) and reload.</div>"
            return layout("Upload", b)
        }
        b += "<p class=\"small muted\">Files go through the same API as clients' uploads (PUT /api/v1/files), straight into the lake, each as a new version.</p>"
        b += "<form id=\"upload\"><p><label>Client and source<br><select id=\"target\">"
        for t in targets { b += "<option value=\"\(esc(t.client))/\(esc(t.source))\">\(esc(t.client)) / \(esc(t.source))</option>" }
        b += "</select></label></p><p><label>Folder (optional)<br><input type=\"text\" id=\"folder\" placeholder=\"e.g. 2026/11\"></label></p>"
        b += "<p><input type=\"file\" id=\"files\" multiple></p><p><button type=\"submit\">Upload</button></p></form>"
        b += "<div class=\"scroll\"><table><thead><tr><th>File</th><th style=\"width:40%\">Progress</th><th>Result</th></tr></thead><tbody id=\"progress\"></tbody></table></div>"
        b += "<noscript><p class=\"bad\">The upload page needs JavaScript for its progress bars; or use the API with curl (see README).</p></noscript>"
        b += """
            <script>
            const csrf = "\(esc(csrf))";
            const form = document.getElementById("upload");
            form.addEventListener("submit", (e) => {
              e.preventDefault();
              const [client, source] = document.getElementById("target").value.split("/");
              const folder = document.getElementById("folder").value.trim().replace(/^\\/+|\\/+$/g, "");
              for (const f of document.getElementById("files").files) send(f, client, source, folder);
            });
            function cell(tr, html) { const td = document.createElement("td"); td.innerHTML = html; tr.appendChild(td); return td; }
            function send(file, client, source, folder) {
              const tr = document.createElement("tr");
              const name = cell(tr, ""); name.className = "mono"; name.textContent = (folder ? folder + "/" : "") + file.name;
              const bar = document.createElement("progress"); bar.max = 100; bar.value = 0; cell(tr, "").appendChild(bar);
              const result = cell(tr, "waiting…");
              document.getElementById("progress").appendChild(tr);
              const path = (folder ? folder.split("/").map(encodeURIComponent).join("/") + "/" : "") + encodeURIComponent(file.name);
              const xhr = new XMLHttpRequest();
              xhr.open("PUT", "/api/v1/files/" + path + "?client=" + encodeURIComponent(client) + "&source=" + encodeURIComponent(source));
              xhr.setRequestHeader("X-CSRF-Token", csrf);
              xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) { bar.value = 100 * ev.loaded / ev.total; result.textContent = "uploading…"; } };
              xhr.onload = () => {
                let r = {}; try { r = JSON.parse(xhr.responseText); } catch (_) {}
                bar.value = 100;
                if (xhr.status === 201) { result.className = "ok"; result.textContent = "stored as version " + r.version; }
                else if (xhr.status === 200) { result.className = "muted"; result.textContent = "unchanged: same as version " + r.version; }
                else { result.className = "bad"; result.textContent = "failed (" + xhr.status + "): " + (r.error || xhr.statusText); }
                result.dataset.status = String(xhr.status);
              };
              xhr.onerror = () => { result.className = "bad"; result.textContent = "failed: the connection broke"; result.dataset.status = "0"; };
              xhr.send(file);
            }
            </script>
            """
        return layout("Upload", b)
    }

    // MARK: Login

    static func login(csrf: String, error: String?, open: Bool) -> String {
        var b = "<h1>Log in</h1>"
        if open { b += "<p>The console is on loopback: no login is needed. <a href=\"/\">Go to the overview</a>.</p>" }
        if let error { b += "<p class=\"bad\">\(esc(error))</p>" }
        b += "<form method=\"post\" action=\"/login\">\(hidden(csrf))<p><label>Admin token (the first line of <code>admin_token_file</code>)<br>"
        b += "<input type=\"password\" name=\"token\" autocomplete=\"current-password\" size=\"48\"></label></p><p><button type=\"submit\">Log in</button></p></form>"
        return layout("Log in", b)
    }
}
