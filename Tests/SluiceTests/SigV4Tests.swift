import Crypto
import Foundation
import SluiceS3
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats

/// AWS's own SigV4 test suite (Tests/fixtures/sigv4, from botocore; see its README): every
/// case's canonical request, string to sign and Authorization header, byte for byte.
struct SigV4Tests {
    static let suite = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures/sigv4").path

    static var cases: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: suite)) ?? [])
            .filter { FileManager.default.fileExists(atPath: "\(suite)/\($0)/\($0).req") }
            .sorted()
    }

    /// The suite's credentials and scope; `get-vanilla-with-session-token` adds a token.
    static func signer(for name: String) -> SigV4Signer {
        let token = name == "get-vanilla-with-session-token" ? "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267" : nil
        return SigV4Signer(credentials: S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sessionToken: token),
                           region: "us-east-1", service: "service", normalizesPath: true)
    }

    /// Parses a `.req` file: request line (the path may hold spaces), headers (a line that
    /// starts with white space continues the one before), a blank line, the body.
    static func parse(_ text: String) -> (request: SigV4Signer.Request, amzDate: String) {
        let lines = text.components(separatedBy: "\n")
        let first = lines[0]
        let method = String(first[..<first.firstIndex(of: " ")!])
        let target = String(first[first.index(after: first.firstIndex(of: " ")!)..<first.range(of: " HTTP/", options: .backwards)!.lowerBound])
        var headers: [(name: String, value: String)] = []
        var i = 1
        while i < lines.count, !lines[i].isEmpty {
            let line = lines[i]
            if line.first == " " || line.first == "\t", !headers.isEmpty {
                headers[headers.count - 1].value += " " + line.trimmingCharacters(in: .whitespaces)
            } else {
                let colon = line.firstIndex(of: ":")!
                headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
            i += 1
        }
        let body = i + 1 < lines.count ? lines[(i + 1)...].joined(separator: "\n") : ""
        var path = target
        var query: [(name: String, value: String?)] = []
        if let q = target.firstIndex(of: "?") {
            path = String(target[..<q])
            for pair in target[target.index(after: q)...].split(separator: "&", omittingEmptySubsequences: true) {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
                let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : nil
                query.append((name, value))
            }
        }
        let amzDate = headers.first { $0.name.lowercased() == "x-amz-date" }!.value
        let digest = SHA256Hex.of(Data(body.utf8))
        return (SigV4Signer.Request(method: method, path: path, query: query, headers: headers, payloadSHA256: digest), amzDate)
    }

    @Test func theSuiteIsThere() {
        #expect(Self.cases.count >= 30, "Tests/fixtures/sigv4 holds AWS's cases")
    }

    @Test(arguments: cases) func officialVector(_ name: String) throws {
        let read = { (ext: String) in try String(contentsOfFile: "\(Self.suite)/\(name)/\(name).\(ext)", encoding: .utf8) }
        var (request, amzDate) = Self.parse(try read("req"))
        let signer = Self.signer(for: name)
        if let token = signer.credentials.sessionToken, name != "post-sts-header-after" {
            request.headers.append(("X-Amz-Security-Token", token))
        }
        let canonical = signer.canonicalRequest(request).text
        #expect(canonical == (try read("creq")), "canonical request of \(name)")
        #expect(signer.stringToSign(canonicalRequest: canonical, amzDate: amzDate) == (try read("sts")), "string to sign of \(name)")
        #expect(signer.authorization(request, amzDate: amzDate) == (try read("authz")), "Authorization of \(name)")
    }

    @Test func s3PathsAreEncodedOnceAndNotNormalized() {
        let signer = SigV4Signer(credentials: S3Credentials(accessKeyID: "AKID", secretAccessKey: "secret"), region: "eu-central-1")
        let r = SigV4Signer.Request(method: "GET", path: "/bucket/a b/../ü+c.csv", query: [("prefix", "daily/"), ("list-type", "2")],
                                    headers: [("Host", "s3.example")], payloadSHA256: SigV4Signer.emptyPayloadSHA256)
        let canonical = signer.canonicalRequest(r).text.components(separatedBy: "\n")
        #expect(canonical[1] == "/bucket/a%20b/../%C3%BC%2Bc.csv")
        #expect(canonical[2] == "list-type=2&prefix=daily%2F")
        #expect(r.target == "/bucket/a%20b/../%C3%BC%2Bc.csv?list-type=2&prefix=daily%2F")
    }

    @Test func secretsStayOutOfDescriptions() {
        let c = S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sessionToken: "FQoGZXIvYXdzEXAMPLETOKEN")
        #expect(!"\(c)".contains("wJalr"))
        #expect(!"\(c)".contains("FQoGZXIv"))
        #expect("\(c)".contains("AKIDEXAMPLE"))
    }
}

enum SHA256Hex {
    static func of(_ data: Data) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }
}
