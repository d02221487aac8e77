// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "zaas",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "zaas-control", targets: ["zaas-control"]),
        .executable(name: "zaas-data", targets: ["zaas-data"]),
        .executable(name: "zaasctl", targets: ["zaasctl"]),
        .executable(name: "zaas-train", targets: ["zaas-train"]),
        .library(name: "Shared", targets: ["Shared"]),
        .library(name: "Embeddings", targets: ["Embeddings"]),
        .library(name: "Canon", targets: ["Canon"]),
        .library(name: "Retrieval", targets: ["Retrieval"]),
        .library(name: "ControlPlane", targets: ["ControlPlane"]),
        .library(name: "DataPlane", targets: ["DataPlane"]),
        .executable(name: "bench-admin", targets: ["bench-admin"]),
        .executable(name: "bench-config", targets: ["bench-config"]),
        .executable(name: "bench-embeddings", targets: ["bench-embeddings"]),
        .executable(name: "bench-canon", targets: ["bench-canon"]),
        .executable(name: "bench-cache", targets: ["bench-cache"]),
        .executable(name: "bench-soak", targets: ["bench-soak"]),
        .executable(name: "bench-gateway", targets: ["bench-gateway"]),
        .executable(name: "bench-usage", targets: ["bench-usage"]),
        // bench-cache's anchor: a bare Hummingbird route (not a bench-*, which `make bench` runs).
        .executable(name: "anchor-hello", targets: ["anchor-hello"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // MARK: Common: what both planes share, one folder per module.

        // Domain types, the config snapshot format, the internal API's wire constants, API keys,
        // problems, settings, logging and metrics, the Redis client, Argon2id.
        .target(
            name: "Shared",
            dependencies: [
                "CHiredis",
                "CArgon2",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Common/Shared",
            swiftSettings: swiftSettings
        ),
        // The canon: entries, uploads and their validation, chunking, the index artifact.
        .target(
            name: "Canon",
            dependencies: [
                "Shared", "CZlib", "CKernels", "Embeddings", .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Common/Canon",
            swiftSettings: swiftSettings
        ),
        // Hybrid BM25 + vector retrieval over a tenant's canon layers.
        .target(
            name: "Retrieval",
            dependencies: ["Canon", "CKernels", "Embeddings"],
            path: "Common/Retrieval",
            swiftSettings: swiftSettings
        ),
        // Sentence embeddings in process (all-MiniLM-L6-v2 on OpenBLAS).
        .target(
            name: "Embeddings",
            dependencies: ["CBLAS", "CKernels"],
            path: "Common/Embeddings",
            swiftSettings: swiftSettings
        ),
        // Hot loops in C, vectorised by the compiler (8-bit dot products, softmax).
        .target(
            name: "CKernels",
            path: "Common/CKernels",
            cSettings: [.unsafeFlags(["-O3"])]
        ),
        // System libraries from Debian's -dev packages.
        .systemLibrary(
            name: "CHiredis",
            path: "Common/CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CArgon2",
            path: "Common/CArgon2",
            pkgConfig: "libargon2",
            providers: [.apt(["libargon2-dev"])]
        ),
        .systemLibrary(
            name: "CBLAS",
            path: "Common/CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            path: "Common/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),

        // MARK: The planes: each a library holding all its logic.

        // The control plane: system of record on PostgreSQL, admin API, config distribution,
        // canon builds, the internal API nodes call.
        .target(
            name: "ControlPlane",
            dependencies: [
                "Shared",
                "Canon",
                "Embeddings",
                "CZlib",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "_ConnectionPoolModule", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "ControlPlane",
            swiftSettings: swiftSettings
        ),
        // The data plane: stateless query nodes.
        .target(
            name: "DataPlane",
            dependencies: [
                "Shared",
                "Canon",
                "Retrieval",
                "Embeddings",
                "CKernels",
                "CZlib",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "DataPlane",
            swiftSettings: swiftSettings
        ),

        // MARK: Executables: thin entry points.

        .executableTarget(
            name: "zaas-control",
            dependencies: [
                "ControlPlane",
                "Shared",
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            path: "Executables/zaas-control",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "zaas-data",
            dependencies: [
                "DataPlane",
                "Shared",
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            path: "Executables/zaas-data",
            swiftSettings: swiftSettings
        ),
        // The admin CLI: the admin REST API from the shell.
        // Trains the shipped classifiers from infra/labelled/ (docs/routing.md).
        .executableTarget(
            name: "zaas-train",
            dependencies: ["Canon", "Embeddings", "Retrieval"],
            path: "Executables/zaas-train",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "zaasctl",
            dependencies: [
                "Embeddings",
                "Shared",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Executables/zaasctl",
            swiftSettings: swiftSettings
        ),

        // MARK: Tests. TestSupport finds the local stack's services (started by `make test`).

        .target(
            name: "TestSupport",
            dependencies: [
                "Canon",
                "Shared",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SharedTests",
            dependencies: [
                "Shared",
                "TestSupport",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            path: "Tests/SharedTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CanonTests",
            dependencies: ["Canon", "CZlib", "Embeddings", "Retrieval", "TestSupport"],
            path: "Tests/CanonTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RetrievalTests",
            dependencies: ["Retrieval", "Canon", "Embeddings", "DataPlane", "TestSupport"],
            path: "Tests/RetrievalTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EmbeddingsTests",
            dependencies: ["Embeddings", "CKernels", "TestSupport"],
            path: "Tests/EmbeddingsTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ControlPlaneTests",
            dependencies: [
                "ControlPlane",
                "Shared",
                "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Tests/ControlPlaneTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DataPlaneTests",
            dependencies: [
                "DataPlane",
                "Canon",
                "Retrieval",
                "Embeddings",
                "ControlPlane",
                "Shared",
                "TestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Tests/DataPlaneTests",
            swiftSettings: swiftSettings
        ),

        // Benchmarks: `make bench` runs every executable named bench-* (docs/benchmarks.md).
        .executableTarget(
            name: "bench-admin",
            dependencies: [
                "ControlPlane",
                "Shared",
                "TestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/Benchmarks/AdminBench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bench-config",
            dependencies: [
                "ControlPlane",
                "DataPlane",
                "Shared",
                "TestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Tests/Benchmarks/ConfigBench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bench-canon",
            dependencies: [
                "Canon", "Retrieval", "Embeddings", "ControlPlane", "Shared", "TestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Tests/Benchmarks/CanonBench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bench-gateway",
            dependencies: [
                "Shared", "TestSupport", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/Benchmarks/GatewayBench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bench-cache",
            dependencies: [
                "Canon", "Shared", "DataPlane", "TestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/Benchmarks/CacheBench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "anchor-hello",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Tests/Benchmarks/HelloAnchor",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bench-usage",
            dependencies: [
                "Shared", "TestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/Benchmarks/UsageBench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bench-soak",
            dependencies: ["Canon", "TestSupport"],
            path: "Tests/Benchmarks/SoakBench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bench-embeddings",
            dependencies: ["Embeddings", "CBLAS", "CKernels", "TestSupport"],
            path: "Tests/Benchmarks/EmbeddingsBench",
            swiftSettings: swiftSettings
        ),
    ]
)
