import Foundation

/// The class of model a backend belongs to; tiers and quota policies say which a tenant may use.
public enum ModelClass: String, Sendable, CaseIterable, Codable {
    /// Small models near the nodes (llama.cpp's `llama-server`, Ollama, vLLM on the premises).
    case local
    /// Large hosted models (GPT-OSS-120B and the like) behind a provider's API.
    case cloud
    /// Large models run on the premises with little memory, one layer at a time (the AirLLM
    /// sidecar, infra/airllm/): slow (seconds a token on a processor), so often asked
    /// asynchronously; for tenants who may not send questions to a cloud.
    case largeLocal = "large-local"

    public var flag: ModelClasses {
        switch self {
        case .local: .local
        case .cloud: .cloud
        case .largeLocal: .largeLocal
        }
    }

    /// This class, then the classes a query wanting it falls back to, in order (the extractive
    /// answer comes after all of them). A complex question the cloud cannot take goes to the
    /// large local model before the small one; the large local model's fallback is standard
    /// inference on the small one; a simple question tries the fast classes first.
    public var fallbacks: [ModelClass] {
        switch self {
        case .local: [.local, .cloud, .largeLocal]
        case .cloud: [.cloud, .largeLocal, .local]
        case .largeLocal: [.largeLocal, .local, .cloud]
        }
    }
}

/// The wire protocol a backend speaks.
public enum ModelProtocol: String, Sendable, CaseIterable, Codable {
    /// `POST {base_url}/chat/completions` as OpenAI defines it: what Ollama, llama.cpp's
    /// `llama-server`, vLLM and the cloud providers all serve.
    case openAIChat = "openai-chat"
}

/// One entry of the model catalog: a backend nodes may send questions to.
///
/// Operators manage the catalog on the control plane; it reaches nodes in every config document.
/// No secret is part of it: `credentialName` names the credential a node reads from its own
/// environment or secret directory (`models.credentials_dir`).
public struct ModelBackend: Sendable, Equatable, Hashable {
    public var id: UUID
    /// What answers report as `model_used` (`gpt-oss-120b`); unique in the catalog.
    public var name: String
    public var modelClass: ModelClass
    public var api: ModelProtocol
    /// The API root, without `/chat/completions` (`http://127.0.0.1:8090/v1`).
    public var baseURL: String
    /// The `model` field sent to the backend (a provider's model id); often the same as `name`.
    public var upstreamModel: String
    /// The name of the bearer credential (`ZAAS_MODEL_OPENAI`), or nil when the backend needs none.
    public var credentialName: String?
    /// How long one call may take, first byte to last.
    public var timeoutMilliseconds: UInt32
    /// Calls one node keeps open to the backend at once.
    public var maxConcurrency: UInt16
    /// Tokens the model reads and writes in one call (prompt plus answer).
    public var contextWindow: UInt32
    /// US dollars per 1 000 tokens, in billionths (nano-dollars) so that prices add up exactly.
    public var inputNanoDollarsPer1K: UInt64
    public var outputNanoDollarsPer1K: UInt64
    /// A disabled backend stays in the catalog but is never chosen.
    public var enabled: Bool

    public init(
        id: UUID, name: String, modelClass: ModelClass, api: ModelProtocol = .openAIChat, baseURL: String,
        upstreamModel: String? = nil, credentialName: String? = nil, timeoutMilliseconds: UInt32 = 30_000,
        maxConcurrency: UInt16 = 4, contextWindow: UInt32 = 8192, inputNanoDollarsPer1K: UInt64 = 0,
        outputNanoDollarsPer1K: UInt64 = 0, enabled: Bool = true
    ) {
        self.id = id
        self.name = name
        self.modelClass = modelClass
        self.api = api
        self.baseURL = baseURL
        self.upstreamModel = upstreamModel ?? name
        self.credentialName = credentialName
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxConcurrency = maxConcurrency
        self.contextWindow = contextWindow
        self.inputNanoDollarsPer1K = inputNanoDollarsPer1K
        self.outputNanoDollarsPer1K = outputNanoDollarsPer1K
        self.enabled = enabled
    }

    /// The cost of one call in nano-dollars.
    public func costNanoDollars(inputTokens: Int, outputTokens: Int) -> UInt64 {
        let input = UInt64(max(inputTokens, 0)) * self.inputNanoDollarsPer1K
        let output = UInt64(max(outputTokens, 0)) * self.outputNanoDollarsPer1K
        return (input + output) / 1000
    }
}

/// The rules every catalog entry follows, checked by the admin API, the database and nodes alike.
public enum ModelCatalogRules {
    public static let timeoutMilliseconds: ClosedRange<UInt32> = 100...600_000
    public static let maxConcurrency: ClosedRange<UInt16> = 1...1024
    public static let contextWindow: ClosedRange<UInt32> = 256...4_194_304
    /// $1 000 per 1 000 tokens: far above any real price, low enough that sums cannot overflow.
    public static let maximumNanoDollarsPer1K: UInt64 = 1_000_000_000_000
    public static let maximumURLLength = 2048
    /// Entries in the catalog: it travels in every config document.
    public static let maximumEntries = 64

    /// 1 to 100 characters: letters, digits and `. _ : / -`, starting with a letter or digit.
    public static func isValidName(_ name: String) -> Bool {
        guard (1...100).contains(name.utf8.count), let first = name.unicodeScalars.first,
            Self.isAlphanumeric(first)
        else { return false }
        return name.unicodeScalars.allSatisfy { Self.isAlphanumeric($0) || "._:/-".unicodeScalars.contains($0) }
    }

    /// An environment-variable name: upper-case letters, digits and `_`, starting with a letter.
    public static func isValidCredentialName(_ name: String) -> Bool {
        guard (1...128).contains(name.utf8.count), let first = name.unicodeScalars.first, ("A"..."Z").contains(first)
        else { return false }
        return name.unicodeScalars.allSatisfy { ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    /// An absolute http or https URL with a host, no user info, query or fragment; nil if it is one.
    public static func problemWithBaseURL(_ text: String) -> String? {
        guard text.utf8.count <= Self.maximumURLLength else {
            return "must be at most \(Self.maximumURLLength) bytes"
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
        else { return "must be an absolute http or https URL" }
        guard components.user == nil, components.password == nil else {
            return "must not carry credentials (name them in credential_name)"
        }
        guard components.query == nil, components.fragment == nil else {
            return "must not have a query or fragment"
        }
        return nil
    }

    private static func isAlphanumeric(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
    }
}
