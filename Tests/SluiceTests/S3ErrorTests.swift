import Foundation
import NIOCore
import NIOHTTP1
@testable import SluiceS3
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats

/// The answers of AWS S3 that moto never gives (a wrong region, expired credentials, throttling),
/// as AWS documents them: each becomes a message that says what to do, and only the transient
/// ones are retried.
struct S3ErrorTests {
    static let bucket = S3Bucket(endpoint: URL(string: "https://s3.eu-central-1.amazonaws.com")!, region: "eu-central-1", bucket: "acme-exports", pathStyle: false)

    static func error(_ status: Int, _ xml: String, headers: [(String, String)] = []) -> S3Error {
        S3Client.serviceError(status: status, headers: HTTPHeaders(headers), body: ByteBuffer(string: xml), what: "listing acme-exports/daily/", bucket: bucket)
    }

    @Test func aWrongRegionNamesTheRightOne() {
        let malformed = Self.error(400, """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region 'eu-central-1' is wrong; expecting 'us-west-2'</Message><Region>us-west-2</Region><RequestId>X</RequestId></Error>
            """)
        #expect(malformed.message.contains("is in region us-west-2, not eu-central-1: set region = \"us-west-2\""), "\(malformed.message)")
        #expect(!malformed.retryable)
        let moved = Self.error(301, "<Error><Code>PermanentRedirect</Code><Message>…</Message></Error>", headers: [("x-amz-bucket-region", "ap-south-1")])
        #expect(moved.message.contains("set region = \"ap-south-1\""), "\(moved.message)")
        #expect(moved.region == "ap-south-1")
    }

    @Test func expiredCredentialsAndASkewedClockSayWhatToDo() {
        let expired = Self.error(400, "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>")
        #expect(expired.message.contains("expired") && expired.message.contains("aws_session_token"), "\(expired.message)")
        let skewed = Self.error(403, "<Error><Code>RequestTimeTooSkewed</Code><Message>…</Message></Error>")
        #expect(skewed.message.contains("clock"))
        let denied = Self.error(403, "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>")
        #expect(denied.message.contains("s3:ListBucket") && denied.message.contains("acme-exports"))
        #expect(!denied.retryable)
    }

    @Test func throttlingAndServerErrorsAreRetried() {
        #expect(Self.error(503, "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>").retryable)
        #expect(Self.error(500, "<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>").retryable)
        #expect(Self.error(502, "").retryable)
        #expect(!Self.error(404, "<Error><Code>NoSuchKey</Code></Error>").retryable)
        #expect(Self.error(412, "").isPreconditionFailed)
    }

    @Test func retriesBackOffAndStopAtTheLimit() {
        let client = S3Client(bucket: Self.bucket, credentials: S3Credentials(accessKeyID: "A", secretAccessKey: "B"),
                              attempts: 4, baseDelayMs: 1)
        var calls = 0
        #expect(throws: S3Error.self) {
            try client.withRetries { () throws(S3Error) in
                calls += 1
                throw S3Error(status: 503, code: "SlowDown", message: "slow down", retryable: true)
            }
        }
        #expect(calls == 4)
        calls = 0
        let value = try? client.withRetries { () throws(S3Error) -> Int in
            calls += 1
            if calls < 3 { throw S3Error(status: 500, message: "oops", retryable: true) }
            return 42
        }
        #expect(value == 42 && calls == 3)
        calls = 0
        _ = try? client.withRetries { () throws(S3Error) in
            calls += 1
            throw S3Error(status: 403, code: "AccessDenied", message: "no")
        }
        #expect(calls == 1, "a lasting failure is not retried")
    }

    @Test func listingsAreParsedWithURLEncodedKeys() {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>daily/</Prefix>
            <KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
            <Contents><Key>daily/sp+ace%2Bplus%26%C3%A9.csv</Key><LastModified>2026-11-25T11:33:17.250Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>10</Size><StorageClass>STANDARD</StorageClass></Contents>
            <Contents><Key>daily/folder/</Key><LastModified>2026-11-25T11:33:17.000Z</LastModified><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag><Size>0</Size></Contents>
            <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>
            """
        let page = ListParser.parse(Data(xml.utf8), urlEncoded: true)
        #expect(page?.objects.count == 2)
        #expect(page?.objects[0].key == "daily/sp ace+plus&é.csv")
        #expect(page?.objects[0].etag == "\"9b2cf535f27731c974343645a3985328\"")
        #expect(page?.objects[0].size == 10)
        #expect(page?.objects[0].lastModified == "2026-11-25T11:33:17.250Z")
        #expect(page?.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        #expect(ListParser.parse(Data("<Error><Code>AccessDenied</Code></Error>".utf8), urlEncoded: true) == nil)
    }

    /// moto sends `<EncodingType>` after the `<Contents>` it applies to, with `%20` for a space;
    /// the keys are decoded because the request asked for it, whatever the element order.
    @Test func keysAreDecodedWhereverEncodingTypeComes() {
        let xml = """
            <ListBucketResult><Name>b</Name><Prefix>in/</Prefix><IsTruncated>false</IsTruncated>
            <Contents><Key>in/b%20b.csv</Key><LastModified>2026-11-25T11:33:17.250Z</LastModified><ETag>"e"</ETag><Size>1</Size></Contents>
            <Contents><Key>in/%C3%BC.csv</Key><LastModified>2026-11-25T11:33:17.250Z</LastModified><ETag>"e"</ETag><Size>1</Size></Contents>
            <Contents><Key>in/p%2Bq%25r%26s%3Ct%20</Key><LastModified>2026-11-25T11:33:17.250Z</LastModified><ETag>"e"</ETag><Size>1</Size></Contents>
            <EncodingType>url</EncodingType></ListBucketResult>
            """
        let page = ListParser.parse(Data(xml.utf8), urlEncoded: true)
        #expect(page?.objects.map(\.key) == ["in/b b.csv", "in/ü.csv", "in/p+q%r&s<t "])
        // Not asked for: taken as they are.
        #expect(ListParser.parse(Data(xml.utf8), urlEncoded: false)?.objects.first?.key == "in/b%20b.csv")
    }
}
