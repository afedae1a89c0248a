import Crypto
import Foundation
import SluiceSupport

/// AWS access keys. The secret never appears in a description, a log line or an error.
public struct S3Credentials: Sendable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String { "access key \(accessKeyID)" + (sessionToken == nil ? "" : " with a session token") }
}

/// AWS Signature Version 4 (`AWS4-HMAC-SHA256`, signed headers).
///
/// S3 signs the path as sent, encoded once and not normalized; other services normalize it
/// (`.` and `..` segments, repeated slashes) and encode the sent path a second time. Both are
/// here, so the signer can be checked against AWS's generic test suite.
public struct SigV4Signer: Sendable {
    public var credentials: S3Credentials
    public var region: String
    public var service: String
    /// Generic services: remove `.`/`..` segments and repeated slashes. S3: no.
    public var normalizesPath: Bool

    public init(credentials: S3Credentials, region: String, service: String = "s3", normalizesPath: Bool = false) {
        self.credentials = credentials
        self.region = region
        self.service = service
        self.normalizesPath = normalizesPath
    }

    /// A request to sign: the path and query as raw (decoded) text; they are encoded here.
    public struct Request: Sendable {
        public var method: String
        /// The raw path, starting with `/` (S3: `/bucket/key` or `/key`).
        public var path: String
        /// Raw names and values; nil is a name without `=`.
        public var query: [(name: String, value: String?)]
        /// Headers as sent; `Host` must be among them.
        public var headers: [(name: String, value: String)]
        /// Lowercase hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
        public var payloadSHA256: String

        public init(method: String, path: String, query: [(name: String, value: String?)] = [],
                    headers: [(name: String, value: String)], payloadSHA256: String) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadSHA256 = payloadSHA256
        }

        /// The path and query as they go on the request line, encoded the way they are signed.
        public var target: String {
            let q = SigV4Signer.canonicalQuery(query)
            return SigV4Signer.encode(path, keepSlash: true) + (q.isEmpty ? "" : "?" + q)
        }
    }

    public static let emptyPayloadSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970)
        var tm = tm()
        gmtime_r(&t, &tm)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
    }

    /// Adds `X-Amz-Date` (and `X-Amz-Security-Token`) and returns the `Authorization` value.
    public func sign(_ request: inout Request, date: Date = Date()) -> String {
        let amzDate = Self.amzDate(date)
        request.headers.append(("X-Amz-Date", amzDate))
        if let token = credentials.sessionToken { request.headers.append(("X-Amz-Security-Token", token)) }
        return authorization(request, amzDate: amzDate)
    }

    /// The `Authorization` value for a request that already carries its `X-Amz-Date`.
    public func authorization(_ request: Request, amzDate: String) -> String {
        let (canonical, signed) = canonicalRequest(request)
        let toSign = stringToSign(canonicalRequest: canonical, amzDate: amzDate)
        let signature = HMAC<SHA256>.authenticationCode(for: Data(toSign.utf8), using: signingKey(day: String(amzDate.prefix(8))))
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(day: String(amzDate.prefix(8)))), "
            + "SignedHeaders=\(signed), Signature=\(hexString(signature))"
    }

    public func scope(day: String) -> String { "\(day)/\(region)/\(service)/aws4_request" }

    /// The canonical request and its signed-header list.
    public func canonicalRequest(_ r: Request) -> (text: String, signedHeaders: String) {
        var byName: [String: [String]] = [:]
        for (name, value) in r.headers {
            byName[name.lowercased(), default: []].append(Self.trimHeaderValue(value))
        }
        let names = byName.keys.sorted()
        let headers = names.map { "\($0):\(byName[$0]!.joined(separator: ","))\n" }.joined()
        let signed = names.joined(separator: ";")
        var path = normalizesPath ? Self.normalize(r.path) : r.path
        if path.isEmpty { path = "/" }
        let uri = Self.encode(path, keepSlash: true)
        let text = [r.method, uri, Self.canonicalQuery(r.query), headers, signed, r.payloadSHA256].joined(separator: "\n")
        return (text, signed)
    }

    public func stringToSign(canonicalRequest: String, amzDate: String) -> String {
        let digest = SHA256.hash(data: Data(canonicalRequest.utf8))
        return "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope(day: String(amzDate.prefix(8))))\n\(hexString(digest))"
    }

    func signingKey(day: String) -> SymmetricKey {
        var key = SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    /// Names and values encoded, sorted by name then value, joined with `&`.
    public static func canonicalQuery(_ query: [(name: String, value: String?)]) -> String {
        query.map { (encode($0.name, keepSlash: false), encode($0.value ?? "", keepSlash: false)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// RFC 3986 encoding as AWS wants it: every byte but `A-Z a-z 0-9 - _ . ~` (and `/` in
    /// paths) as `%XX` in upper case.
    public static func encode(_ s: String, keepSlash: Bool) -> String {
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count)
        let hexDigits = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(b)
            case UInt8(ascii: "/") where keepSlash:
                out.append(b)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(b >> 4)])
                out.append(hexDigits[Int(b & 15)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Trims a header value and folds runs of spaces (and line breaks) into one space.
    static func trimHeaderValue(_ v: String) -> String {
        var out = ""
        var pendingSpace = false
        for ch in v {
            if ch == " " || ch == "\t" || ch == "\n" || ch == "\r" || ch == "\r\n" {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" ") }
                pendingSpace = false
                out.append(ch)
            }
        }
        return out
    }

    /// RFC 3986 dot-segment removal plus repeated-slash folding (generic services only).
    static func normalize(_ path: String) -> String {
        var out: [Substring] = []
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        for p in parts {
            if p == "." { continue }
            if p == ".." {
                if !out.isEmpty { out.removeLast() }
                continue
            }
            out.append(p)
        }
        let trailing = path.hasSuffix("/") && !out.isEmpty
        return "/" + out.joined(separator: "/") + (trailing ? "/" : "")
    }
}
