import Foundation

/// A tenant's usage for a period, as `GET /api/v1/stats` and the admin API answer it
/// (docs/billing.md). Figures come from the rollups of the audit trail; JSON keys are snake_case.
public struct UsageReport: Codable, Sendable, Equatable {
    /// Counts of one slice of queries (the period, a day, a key).
    public struct Counters: Codable, Sendable, Equatable {
        /// Every query recorded, whatever its outcome.
        public var queries = 0
        /// Answers computed (no cache).
        public var answered = 0
        public var cacheExact = 0
        public var cacheSemantic = 0
        public var cachePersistent = 0
        /// Refused by the rate limit (429).
        public var refusedByLimit = 0
        /// Refused for the key (403: a scope or address the key does not have).
        public var refusedOther = 0
        public var invalid = 0
        public var failed = 0
        /// Streams the client left before the answer was complete.
        public var abandoned = 0
        public var inputTokens = 0
        public var outputTokens = 0
        /// Model cost at the catalog's prices, in billionths of a US dollar.
        public var costNanodollars = 0
        /// Cache hits among the queries answered (answered + hits); nil when there were none.
        public var cacheHitRate: Double?

        public init() {}

        public var cacheHits: Int { self.cacheExact + self.cacheSemantic + self.cachePersistent }

        /// Adds `queries` events of `outcome` with `status` and their model usage.
        public mutating func add(
            outcome: String, status: Int, queries: Int, inputTokens: Int = 0, outputTokens: Int = 0,
            costNanodollars: Int = 0
        ) {
            self.queries += queries
            switch outcome {
            case AuditEvent.Outcome.answered: self.answered += queries
            case AuditEvent.Outcome.cacheExact: self.cacheExact += queries
            case AuditEvent.Outcome.cacheSemantic: self.cacheSemantic += queries
            case AuditEvent.Outcome.cachePersistent: self.cachePersistent += queries
            case AuditEvent.Outcome.refused where status == 429: self.refusedByLimit += queries
            case AuditEvent.Outcome.refused: self.refusedOther += queries
            case AuditEvent.Outcome.invalid: self.invalid += queries
            case AuditEvent.Outcome.failed: self.failed += queries
            case AuditEvent.Outcome.abandoned: self.abandoned += queries
            default: break
            }
            self.inputTokens += inputTokens
            self.outputTokens += outputTokens
            self.costNanodollars += costNanodollars
            let served = self.answered + self.cacheHits
            self.cacheHitRate = served == 0 ? nil : Double(self.cacheHits) / Double(served)
        }
    }

    public struct Day: Codable, Sendable, Equatable {
        /// `YYYY-MM-DD` (UTC).
        public var day: String
        public var counters: Counters

        public init(day: String, counters: Counters) {
            self.day = day
            self.counters = counters
        }
    }

    public struct Key: Codable, Sendable, Equatable {
        /// The key's record id, lower case.
        public var keyId: String
        public var counters: Counters

        public init(keyId: String, counters: Counters) {
            self.keyId = keyId
            self.counters = counters
        }
    }

    /// Queries answered by one model (computed, or a cache hit of its answer).
    public struct Model: Codable, Sendable, Equatable {
        public var modelClass: String
        public var model: String
        public var computed = 0
        public var cacheHits = 0
        public var inputTokens = 0
        public var outputTokens = 0
        public var costNanodollars = 0

        public init(modelClass: String, model: String) {
            self.modelClass = modelClass
            self.model = model
        }
    }

    /// Latency of the queries answered (abandoned streams aside), from a histogram: each figure
    /// is the upper edge of the bucket the percentile falls in (buckets about 25 % wide).
    public struct Latency: Codable, Sendable, Equatable {
        public var samples: Int
        public var p50Ms: Int?
        public var p95Ms: Int?

        public init(samples: Int, p50Ms: Int?, p95Ms: Int?) {
            self.samples = samples
            self.p50Ms = p50Ms
            self.p95Ms = p95Ms
        }

        /// Percentiles from bucket counts (`counts[b]`: bucket b of `bounds`, 0 below the first
        /// bound, `bounds.count` at or above the last).
        public init(counts: [Int: Int], bounds: [Int]) {
            let samples = counts.values.reduce(0, +)
            func percentile(_ q: Double) -> Int? {
                guard samples > 0 else { return nil }
                let rank = max(1, Int((q * Double(samples)).rounded(.up)))
                var seen = 0
                for bucket in counts.keys.sorted() {
                    seen += counts[bucket] ?? 0
                    if seen >= rank { return bounds[min(bucket, bounds.count - 1)] }
                }
                return bounds.last
            }
            self.init(samples: samples, p50Ms: percentile(0.5), p95Ms: percentile(0.95))
        }
    }

    public struct Canon: Codable, Sendable, Equatable {
        /// Versions of the tenant's overlay built in the period, and those whose build failed.
        public var builds: Int
        public var failedBuilds: Int
        /// Bytes of the built artifacts the tenant's versions hold now.
        public var storedBytes: Int

        public init(builds: Int, failedBuilds: Int, storedBytes: Int) {
            self.builds = builds
            self.failedBuilds = failedBuilds
            self.storedBytes = storedBytes
        }
    }

    /// The rate limit the asking key meets now (`GET /api/v1/stats` only: nodes know it).
    public struct Limit: Codable, Sendable, Equatable {
        public var limit: Int
        public var remaining: Int
        public var resetSeconds: Int

        public init(limit: Int, remaining: Int, resetSeconds: Int) {
            self.limit = limit
            self.remaining = remaining
            self.resetSeconds = resetSeconds
        }
    }

    /// Lower case, as every id ZaaS writes.
    public var tenantId: String
    public var from: Date
    public var to: Date
    public var totals: Counters
    public var latency: Latency
    public var byDay: [Day]
    public var byModel: [Model]
    public var byKey: [Key]
    public var canon: Canon
    public var limit: Limit?

    public init(
        tenantId: String, from: Date, to: Date, totals: Counters, latency: Latency, byDay: [Day], byModel: [Model],
        byKey: [Key], canon: Canon, limit: Limit? = nil
    ) {
        self.tenantId = tenantId
        self.from = from
        self.to = to
        self.totals = totals
        self.latency = latency
        self.byDay = byDay
        self.byModel = byModel
        self.byKey = byKey
        self.canon = canon
        self.limit = limit
    }

    /// Decodes what `JSONResponse` wrote.
    public static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}
