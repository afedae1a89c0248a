import Foundation
import NIOCore
import SluiceS3
import SluiceSources

// What arrives over the network: upload API requests, and S3 servers' answers.

extension FuzzHarnesses {
    static let networkHarnesses: [FuzzHarness] = [
        FuzzHarness(name: "upload_api", about: "the upload API's path, X-Content-SHA256, Content-Digest and Authorization headers") { fuzzUploadAPI($0) },
        FuzzHarness(name: "sigv4", about: "SigV4 signing of any key, query and header values: the request line stays encoded, the signature computable") { fuzzSigV4($0) },
        FuzzHarness(name: "s3_xml", about: "S3's XML answers: ListObjectsV2 pages, errors, multipart upload fields") { fuzzS3XML($0) },
    ]

    static func fuzzUploadAPI(_ data: UnsafeRawBufferPointer) {
        let parts = FuzzInput(data).parts(4).map { String(decoding: $0, as: UTF8.self) }
        func part(_ i: Int) -> String? { i < parts.count ? parts[i] : nil }
        if case .success(let path) = UploadRequestText.uploadPath(parts[0]) {
            // A path it takes is relative, has no empty, "." or ".." component and no NUL.
            let components = path.bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
            if path.bytes.isEmpty || path.bytes.contains(0) || components.contains(where: { $0.isEmpty || $0.elementsEqual(".".utf8) || $0.elementsEqual("..".utf8) }) {
                disagreement("upload path \(parts[0].debugDescription) was taken as \(path.display.debugDescription)")
            }
        }
        if case .success(let sha?) = UploadRequestText.declaredSHA256(hex: part(1), contentDigest: part(2)) {
            guard sha.utf8.count == 64, sha.utf8.allSatisfy({ UploadRequestText.hexValue($0) != nil }) else {
                disagreement("declared SHA-256 \(sha.debugDescription) is not 64 hex digits")
            }
        }
        _ = UploadRequestText.bearerToken(part(3))
    }

    static let signer = SigV4Signer(credentials: S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), region: "us-east-1")
    static let headerNames = ["Host", "Content-Type", "If-None-Match", "x-amz-checksum-sha256", "Range", "x-amz-meta-name"]
    static let requestLineBytes = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/%?&=".utf8)

    static func fuzzSigV4(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        var s = signer
        s.normalizesPath = input.flag()
        let lines = input.parts(4).map { String(decoding: $0, as: UTF8.self) }
        let path = "/" + lines[0]
        let query: [(name: String, value: String?)] = (lines.count > 1 ? lines[1] : "").split(separator: "&").prefix(32).map { pair in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(kv[0]), kv.count > 1 ? String(kv[1]) : nil)
        }
        var headers = [("Host", "bucket.s3.example.com")]
        for (i, value) in (lines.count > 2 ? lines[2] : "").split(separator: "\t").prefix(16).enumerated() {
            headers.append((headerNames[i % headerNames.count], String(value)))
        }
        var request = SigV4Signer.Request(method: "GET", path: path, query: query, headers: headers,
                                          payloadSHA256: lines.count > 3 ? lines[3] : SigV4Signer.emptyPayloadSHA256)
        let authorization = s.sign(&request, date: Date(timeIntervalSince1970: 1_790_000_000))
        // Whatever the key and query, the request line carries encoded bytes only, and the
        // encoding reads back as what was signed.
        let target = request.target
        guard target.utf8.allSatisfy({ requestLineBytes.contains($0) }) else { disagreement("request target \(target.debugDescription) is not encoded") }
        guard SigV4Signer.encode(lines[0], keepSlash: false).removingPercentEncoding == lines[0] else {
            disagreement("\(lines[0].debugDescription) does not decode back from its encoding")
        }
        guard !authorization.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }) else { disagreement("Authorization has a line break") }
    }

    static func fuzzS3XML(_ data: UnsafeRawBufferPointer) {
        let bytes = Data(data)
        if let page = ListParser.parse(bytes, urlEncoded: true) { _ = page.objects.count }
        if let page = ListParser.parse(bytes, urlEncoded: false) { _ = page.nextContinuationToken }
        _ = ErrorParser.parse(bytes)
        let buffer = ByteBuffer(bytes: data)
        _ = XMLFields.parse(buffer, record: "Upload", fields: ["Key", "UploadId", "Initiated"])
        _ = XMLFields.error(buffer)
    }
}
