// swift-tools-version:6.1
import PackageDescription

/// MemberImportVisibility is left off: with Foundation and Glibc both in a build, a clean build
/// may attribute C structs such as `stat` and `timespec` to CoreFoundation's module in one
/// compile job and to Glibc's in another, and the feature then fails the build at random.
let upcoming: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]
/// The transform's inner loops (CSV scanning, value parsing, Parquet encoding) touch class
/// state per byte and per value; run-time exclusivity checks there cost more than the work.
/// Release builds only; debug builds and tests keep the checks.
let hotLoops: [SwiftSetting] = upcoming + [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .executable(name: "sluice-fuzz", targets: ["sluice-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        .target(
            name: "CSluiceLinux",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .systemLibrary(
            name: "CLibSSH2",
            // libssh2 1.11 built from Debian's source package with Sluice's patch, statically:
            // `bash scripts/deps.sh` builds it and exports PKG_CONFIG_PATH (see README).
            pkgConfig: "sluice-libssh2"
        ),
        .target(
            name: "SluiceSFTP",
            dependencies: [
                "CLibSSH2",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: upcoming
        ),
        .systemLibrary(
            name: "CCompression",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev", "libsnappy-dev"])]
        ),
        .systemLibrary(
            name: "CArchive",
            pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]
        ),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .systemLibrary(
            name: "CGPGME",
            pkgConfig: "gpgme",
            providers: [.apt(["libgpgme-dev"])]
        ),
        .target(
            name: "SluiceSupport",
            dependencies: [
                "CSluiceLinux",
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "SluiceParquet",
            dependencies: ["CCompression", "SluiceSupport"],
            swiftSettings: hotLoops
        ),
        .target(
            name: "SluiceFormats",
            dependencies: ["CArchive", "CGPGME", "SluiceSupport"],
            swiftSettings: hotLoops
        ),
        .target(
            name: "SluiceLake",
            dependencies: [
                "CSluiceLinux",
                "SluiceSupport",
                "SluiceS3",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "SluiceManifest",
            dependencies: [
                "SluiceSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "SluiceS3",
            dependencies: [
                "SluiceFormats",
                "SluiceSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "SluiceIngest",
            dependencies: [
                "CSluiceLinux",
                "SluiceSupport",
                "SluiceLake",
                "SluiceManifest",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "SluiceConfig",
            dependencies: [
                "SluiceSupport",
                "SluiceManifest",
                "SluiceIngest",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "SluiceSources",
            dependencies: [
                "CSluiceLinux",
                "SluiceSupport",
                "SluiceLake",
                "SluiceManifest",
                "SluiceIngest",
                "SluiceConfig",
                "SluiceSFTP",
                "SluiceS3",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "SluiceTransform",
            dependencies: [
                "CSluiceLinux",
                "SluiceSupport",
                "SluiceLake",
                "SluiceS3",
                "SluiceManifest",
                "SluiceIngest",
                "SluiceConfig",
                "SluiceFormats",
                "SluiceParquet",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: hotLoops
        ),
        .target(
            name: "SluiceAgent",
            dependencies: [
                "CSluiceLinux",
                "CCurl",
                "SluiceSupport",
                "SluiceLake",
                "SluiceManifest",
                "SluiceIngest",
                "SluiceConfig",
                "SluiceSources",
                "SluiceFormats",
                "SluiceTransform",
                "SluiceS3",
                "SluiceSFTP",
                "SluiceParquet",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "SluiceServer",
            dependencies: [
                "SluiceSupport",
                "SluiceAgent",
                "SluiceLake",
                "SluiceManifest",
                "SluiceIngest",
                "SluiceConfig",
                "SluiceSources",
                "SluiceTransform",
                .product(name: "Crypto", package: "swift-crypto"),
                "CSluiceLinux",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceSupport",
                "SluiceAgent",
                "SluiceServer",
                "SluiceLake",
                "SluiceIngest",
                "SluiceConfig",
                "SluiceSources",
                "SluiceTransform",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        // The fuzz harnesses (Fuzz/, `bash scripts/fuzz.sh`): a library the corpus tests call
        // too, and the program libFuzzer drives.
        .target(name: "CFuzzDriver", path: "Fuzz/CFuzzDriver"),
        .target(
            name: "SluiceFuzzHarnesses",
            dependencies: [
                "SluiceSupport",
                "SluiceFormats",
                "SluiceParquet",
                "SluiceConfig",
                "SluiceSFTP",
                "SluiceS3",
                "SluiceSources",
                "SluiceTransform",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Fuzz/Harnesses",
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "sluice-fuzz",
            dependencies: ["SluiceFuzzHarnesses", "CFuzzDriver"],
            path: "Fuzz/Driver",
            swiftSettings: upcoming
        ),
        .target(
            name: "SluiceTestSupport",
            dependencies: [
                "SluiceSupport",
                "SluiceAgent",
                "SluiceLake",
                "SluiceIngest",
                "SluiceConfig",
                "SluiceSources",
                "SluiceTransform",
                "SluiceFormats",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/SluiceTestSupport",
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "SluiceTests",
            dependencies: [
                "sluice",
                "SluiceTestSupport",
                "SluiceSupport",
                "SluiceIngest",
                "SluiceConfig",
                "SluiceSources",
                "SluiceFormats",
                "SluiceAgent",
                "SluiceServer",
                "SluiceLake",
                "SluiceManifest",
                "SluiceSFTP",
                "SluiceS3",
                "SluiceParquet",
                "SluiceTransform",
                "SluiceFuzzHarnesses",
                "CSluiceLinux",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: upcoming
        ),
    ]
)
