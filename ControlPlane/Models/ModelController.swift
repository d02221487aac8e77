import Foundation
import Hummingbird
import Logging
import Shared

/// `/admin/v1/models` (operators): the model catalog. `POST` adds a backend, `GET` lists,
/// `GET …/{id}` shows one, `PUT …/{id}` replaces one whole, `DELETE …/{id}` removes it. Every
/// change reaches nodes with the next config document.
struct ModelController: Sendable {
    let store: ModelCatalogStore

    /// What `POST` and `PUT` take. Only `name`, `model_class` and `base_url` are required.
    struct Body: Decodable {
        let name: String
        let modelClass: String
        let `protocol`: String?
        let baseUrl: String
        let upstreamModel: String?
        let credentialName: String?
        let timeoutMs: Int?
        let maxConcurrency: Int?
        let contextWindow: Int?
        // `convertFromSnakeCase` makes `1k` into `1K`.
        let inputUsdPer1KTokens: Decimal?
        let outputUsdPer1KTokens: Decimal?
        let enabled: Bool?

        static let fields: Set<String> = [
            "name", "model_class", "protocol", "base_url", "upstream_model", "credential_name", "timeout_ms",
            "max_concurrency", "context_window", "input_usd_per_1k_tokens", "output_usd_per_1k_tokens", "enabled",
        ]

        /// The entry this body describes, or every field that is wrong.
        func backend(id: UUID) throws -> ModelBackend {
            var errors: [FieldError] = []
            if !ModelCatalogRules.isValidName(self.name) {
                errors.append(
                    FieldError(
                        "name", "must be 1 to 100 letters, digits and . _ : / -, starting with a letter or digit"))
            }
            let modelClass = ModelClass(rawValue: self.modelClass)
            if modelClass == nil {
                errors.append(
                    FieldError(
                        "model_class", "must be one of \(ModelClass.allCases.map(\.rawValue).joined(separator: ", "))"))
            }
            let api = ModelProtocol(rawValue: self.protocol ?? ModelProtocol.openAIChat.rawValue)
            if api == nil { errors.append(FieldError("protocol", "must be openai-chat")) }
            if let problem = ModelCatalogRules.problemWithBaseURL(self.baseUrl) {
                errors.append(FieldError("base_url", problem))
            }
            let upstream = self.upstreamModel ?? self.name
            if let error = FieldError("upstream_model", text: upstream, length: 1...200) { errors.append(error) }
            if let credential = self.credentialName, !ModelCatalogRules.isValidCredentialName(credential) {
                errors.append(
                    FieldError(
                        "credential_name", "must be 1 to 128 upper-case letters, digits and _, starting with a letter"))
            }
            func bounded<T: FixedWidthInteger>(
                _ value: Int?, _ field: String, _ range: ClosedRange<T>, default fallback: T
            )
                -> T
            {
                guard let value else { return fallback }
                guard value >= Int(range.lowerBound), value <= Int(range.upperBound) else {
                    errors.append(FieldError(field, "must be from \(range.lowerBound) to \(range.upperBound)"))
                    return fallback
                }
                return T(value)
            }
            let timeout = bounded(self.timeoutMs, "timeout_ms", ModelCatalogRules.timeoutMilliseconds, default: 30_000)
            let concurrency = bounded(
                self.maxConcurrency, "max_concurrency", ModelCatalogRules.maxConcurrency, default: 4)
            let window = bounded(self.contextWindow, "context_window", ModelCatalogRules.contextWindow, default: 8192)
            func price(_ value: Decimal?, _ field: String) -> UInt64 {
                guard let value else { return 0 }
                guard let nano = Price.nanoDollars(value) else {
                    errors.append(FieldError(field, "must be from 0 to 1000 US dollars, in steps of 0.000000001"))
                    return 0
                }
                return nano
            }
            let input = price(self.inputUsdPer1KTokens, "input_usd_per_1k_tokens")
            let output = price(self.outputUsdPer1KTokens, "output_usd_per_1k_tokens")
            guard errors.isEmpty, let modelClass, let api else { throw Problem.validation(errors) }
            return ModelBackend(
                id: id, name: self.name, modelClass: modelClass, api: api, baseURL: self.baseUrl,
                upstreamModel: upstream, credentialName: self.credentialName, timeoutMilliseconds: timeout,
                maxConcurrency: concurrency, contextWindow: window, inputNanoDollarsPer1K: input,
                outputNanoDollarsPer1K: output, enabled: self.enabled ?? true)
        }
    }

    func addRoutes(to router: Router<AdminRequestContext>) {
        let models = router.group("/admin/v1/models", context: OperatorContext.self)
        models.post { request, context in
            let body = try await StrictJSON.decode(
                Body.self, from: request, context: context, allowedFields: Body.fields, maximumBytes: 8192)
            let entry = try await self.store.create(
                try body.backend(id: UUID()), operatorID: context.operatorID, logger: context.logger)
            context.logger.notice(
                "model added to the catalog",
                metadata: ["model": "\(entry.backend.name)", "operator": "\(context.operatorID)"])
            return try StrictJSON.response(entry, status: .created)
        }
        models.get { _, context in
            struct Listed: Encodable {
                let items: [ModelCatalogStore.Entry]
            }
            return try StrictJSON.response(Listed(items: try await self.store.list(logger: context.logger)))
        }
        models.get(":id") { _, context in
            try StrictJSON.response(try await self.entry(context.parameters.get("id"), logger: context.logger))
        }
        models.put(":id") { request, context in
            let id = try Self.modelID(context.parameters.get("id"))
            let body = try await StrictJSON.decode(
                Body.self, from: request, context: context, allowedFields: Body.fields, maximumBytes: 8192)
            guard
                let entry = try await self.store.replace(
                    try body.backend(id: id), operatorID: context.operatorID, logger: context.logger)
            else { throw Problem.notFound("No such model.") }
            context.logger.notice(
                "model changed in the catalog",
                metadata: ["model": "\(entry.backend.name)", "operator": "\(context.operatorID)"])
            return try StrictJSON.response(entry)
        }
        models.delete(":id") { _, context in
            let id = try Self.modelID(context.parameters.get("id"))
            guard try await self.store.delete(id, operatorID: context.operatorID, logger: context.logger) else {
                throw Problem.notFound("No such model.")
            }
            context.logger.notice(
                "model removed from the catalog", metadata: ["model": "\(id)", "operator": "\(context.operatorID)"])
            return Response(status: .noContent)
        }
    }

    private func entry(_ text: String?, logger: Logger) async throws -> ModelCatalogStore.Entry {
        guard let entry = try await self.store.fetch(try Self.modelID(text), logger: logger) else {
            throw Problem.notFound("No such model.")
        }
        return entry
    }

    static func modelID(_ text: String?) throws -> UUID {
        guard let text, let id = UUID(uuidString: text) else { throw Problem.notFound("No such model.") }
        return id
    }
}
