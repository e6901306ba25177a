// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "fulcrum",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fulcrum", targets: ["fulcrum"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio", exact: "1.33.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", exact: "1.6.0"),
        // Already in the graph through Hummingbird; named for the HTTP client of `fulcrum simulate` and `fulcrum bench`.
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        // NIOHTTPTypes: the request and response parts a channel handler sees behind Hummingbird's HTTP codec
        // (MalformedRequestHandler). Already built as Hummingbird's dependency.
        .package(url: "https://github.com/apple/swift-nio-extras", exact: "1.35.2"),
        // Already in the graph through postgres-nio (SCRAM auth); named here for SHA-256 migration checksums.
        .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
        // Also already in the graph through postgres-nio; named for the TLS configuration of sslmode=require.
        .package(url: "https://github.com/apple/swift-nio-ssl", exact: "2.37.6"),
        // GET /metrics: counters and histograms through swift-metrics, exposed in Prometheus' text format.
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
    ],
    targets: [
        .target(
            name: "FulcrumCore",
            dependencies: [.product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FulcrumStore",
            dependencies: [
                "FulcrumCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.process("Migrations")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FulcrumServer",
            dependencies: [
                "FulcrumCore",
                "FulcrumStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            resources: [.copy("Resources/openapi.json")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FulcrumSimulator",
            dependencies: [
                "FulcrumCore",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FulcrumBench",
            dependencies: [
                "FulcrumCore",
                "FulcrumSimulator",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fulcrum",
            dependencies: [
                "FulcrumCore",
                "FulcrumServer",
                "FulcrumStore",
                "FulcrumSimulator",
                "FulcrumBench",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FulcrumTestSupport",
            dependencies: [
                "FulcrumStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/FulcrumTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FulcrumCoreTests",
            dependencies: ["FulcrumCore", "FulcrumTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FulcrumStoreTests",
            dependencies: [
                "FulcrumStore",
                "FulcrumCore",
                "FulcrumTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FulcrumSimulatorTests",
            dependencies: [
                "FulcrumSimulator",
                "FulcrumServer",
                "FulcrumStore",
                "FulcrumCore",
                "FulcrumTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FulcrumBenchTests",
            dependencies: ["FulcrumBench", "FulcrumSimulator", "FulcrumCore", "FulcrumTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FulcrumServerTests",
            dependencies: [
                "FulcrumServer",
                "FulcrumStore",
                "FulcrumCore",
                "FulcrumSimulator",
                "FulcrumTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
