import HTTPTypes

/// Header names of the public API (docs/openapi.yaml). The internal API's are in `InternalAPI`.
extension HTTPField.Name {
    /// Correlates a request across logs, responses and problems.
    public static let requestID = Self("X-Request-ID")!
    /// The tenant a caller claims to act for; must match the API key's tenant.
    public static let tenantID = Self("X-Tenant-ID")!

    /// The limit, what is left of it and seconds until it is whole again, on every query answer.
    public static let rateLimitLimit = Self("RateLimit-Limit")!
    public static let rateLimitRemaining = Self("RateLimit-Remaining")!
    public static let rateLimitReset = Self("RateLimit-Reset")!

    /// Which cache answered a query: `exact`, `semantic` or `miss`.
    public static let zaasCache = Self("X-ZaaS-Cache")!
    /// The cosine similarity of the cached question a semantic hit was served for.
    public static let zaasCacheSimilarity = Self("X-ZaaS-Cache-Similarity")!

    /// The addresses a request passed through, the client's first, as a proxy in front (nginx)
    /// sets it; believed only from `http.trusted_proxies` (`ClientAddress`).
    public static let xForwardedFor = Self("X-Forwarded-For")!
}
