import Foundation
import SluiceLake

/// Where an S3 API is and how to sign for it: the keys `type = "s3"` sources and `[lake]` share.
package struct S3EndpointSettings: Sendable {
    package var endpoint: URL
    package var region: String
    package var pathStyle: Bool
    package var credentialsFile: String?
    package var profile: String
}

extension TableReader {
    /// `endpoint`, `region`, `path_style`, `credentials_file` and `profile` of table `path`,
    /// for a bucket named `bucket`.
    package func s3Endpoint(_ t: TOMLTable, path: String, bucket: String) throws(ConfigError) -> S3EndpointSettings {
        let endpointText = try string(t, "endpoint", path, required: true)!
        guard let endpoint = URL(string: endpointText), let scheme = endpoint.scheme, ["http", "https"].contains(scheme),
              let host = endpoint.host, !host.isEmpty, endpoint.query == nil, endpoint.user == nil else {
            throw fail("\(path).endpoint", "expected an http(s) URL such as \"https://s3.eu-central-1.amazonaws.com\", found \"\(endpointText)\"")
        }
        let region = try string(t, "region", path, required: true)!
        guard !region.isEmpty, region.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw fail("\(path).region", "expected a region such as \"eu-central-1\", found \"\(region)\"")
        }
        let pathStyle = try bool(t, "path_style", path) ?? false
        if !pathStyle && bucket.contains(".") && scheme == "https" {
            throw fail("\(path).path_style", "bucket \"\(bucket)\" has dots, which break TLS with virtual-hosted addressing: set path_style = true")
        }
        let credentials = try string(t, "credentials_file", path, required: false).map(resolve)
        let profile = try string(t, "profile", path, required: false) ?? "default"
        guard !profile.isEmpty, !profile.contains(where: { $0 == "]" || $0 == "[" || $0.isNewline }) else {
            throw fail("\(path).profile", "expected a profile name such as \"default\"")
        }
        return S3EndpointSettings(endpoint: endpoint, region: region, pathStyle: pathStyle, credentialsFile: credentials, profile: profile)
    }

    /// Whether `name` can be a bucket's name.
    package static func isBucketName(_ name: String) -> Bool {
        (1...255).contains(name.count) && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }
    }

    /// `[lake]`: the S3 bucket (and key prefix) the lake is in. Without the table, the lake is
    /// `lake_dir` on local disk.
    package func lakeBucket(_ root: TOMLTable) throws(ConfigError) -> LakeBucketSettings? {
        guard let t = try table(root, "lake", "") else { return nil }
        try checkKeys(t, path: "lake", allowed: ["url", "endpoint", "region", "path_style", "credentials_file", "profile"])
        let url = try string(t, "url", "lake", required: true)!
        guard url.hasPrefix("s3://") else {
            throw fail("lake.url", "expected s3://BUCKET/PREFIX such as \"s3://ingest-lake/prod\", found \"\(url)\"")
        }
        let rest = url.dropFirst(5)
        let bucket = String(rest.prefix { $0 != "/" })
        guard Self.isBucketName(bucket) else {
            throw fail("lake.url", "expected a bucket name (letters, digits, '-', '.', '_') after s3://, found \"\(bucket)\"")
        }
        var prefix = String(rest.dropFirst(bucket.count).drop { $0 == "/" })
        guard !prefix.contains("//"), !prefix.utf8.contains(0), !prefix.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }) else {
            throw fail("lake.url", "the key prefix \"\(prefix)\" has an empty, '.' or '..' segment")
        }
        if !prefix.isEmpty && !prefix.hasSuffix("/") { prefix += "/" }
        let s3 = try s3Endpoint(t, path: "lake", bucket: bucket)
        return LakeBucketSettings(bucket: bucket, prefix: prefix, endpoint: s3.endpoint, region: s3.region, pathStyle: s3.pathStyle,
                                  credentialsFile: s3.credentialsFile, profile: s3.profile)
    }
}
